// Package server assembles a Matinee server from its configuration: the
// media worker, the rooms, the WebSocket signalling and the web client,
// behind one http.Handler.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/matinee-dev/matinee/certs"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/ingest"
	"github.com/matinee-dev/matinee/lanaddr"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/matinee-dev/matinee/signaling"
	"github.com/matinee-dev/matinee/web"
	"github.com/matinee-dev/matinee/whip"
)

// Server is one running Matinee instance, without its listeners.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	worker *sfu.Worker
	rooms  *room.Manager
	sig    *signaling.Server
	mux    *http.ServeMux
	cancel context.CancelFunc
	certs  atomic.Pointer[certs.Manager]
	apiKey string
	// hlsKey signs live HLS URLs (hls.go).
	hlsKey []byte

	// LAN reachability: ICE-TCP, TURN, announced addresses (lan.go); the
	// HTTPS port once Run listens; where the start-up QR code goes.
	lan       *lanSetup
	web       *web.Site // the browser client, and the error and help pages in its look
	httpsPort atomic.Int32
	term      atomic.Pointer[io.Writer]

	// WHIP/WHEP and metrics (whip.go, metrics.go).
	whip       *whip.Handler
	tokens     atomic.Pointer[TokenValidator]
	recordings atomic.Pointer[func() int]
	// ingests runs what streams into rooms: plain RTP, files and RTMP
	// publishers (package ingest; its wiring is ingest.go).
	ingests *ingest.Service
	// rec records rooms (recording.go).
	rec *recordingState
	// api is the REST API under /api (package rest).
	api *rest.API
	// cluster is this node's part in a cluster (--redis, cluster.go); nil
	// for a node on its own.
	cluster *clusterGlue
}

// New starts the media worker (opening the UDP port) and builds the HTTP
// routes. Close releases everything.
func New(ctx context.Context, cfg config.Config) (*Server, error) {
	return NewWithLogger(ctx, cfg, slog.Default())
}

// NewWithLogger is New with an explicit logger.
func NewWithLogger(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	lan, err := newLANSetup(ctx, cfg, log)
	if err != nil {
		cancel()
		return nil, err
	}
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{
		UDPPort:    cfg.UDPPort,
		Interfaces: cfg.ICEInterfaces,
		InterfaceFilter: func(name string) bool {
			return lanaddr.KeepInterface(name, lanaddr.Options{})
		},
		LoopbackOnly:          cfg.ICELoopbackOnly,
		AnnounceIPs:           lan.announceIPs,
		TCPListener:           lan.iceTCP,
		ConnectTimeout:        cfg.ConnectTimeout,
		NACKHistory:           cfg.NACKHistory,
		PublisherStartBitrate: publisherStart(cfg.PublisherStartBitrate),
		RelayKeyframeInterval: cfg.RelayKeyframeInterval,
		Logger:                log,
	})
	if err != nil {
		lan.close()
		cancel()
		return nil, err
	}
	key, created, err := loadAPIKey(cfg.APIKey, cfg.DataDir)
	if err == nil {
		err = lan.startTURN(lanAddrsOf(cfg, log))
	}
	if err != nil {
		_ = w.Close()
		lan.close()
		cancel()
		return nil, err
	}
	rc := partyConfig(cfg, key, log)
	rc.ICEServers = lan.iceServers(func() []string { return lan.turnHosts(lanAddrsOf(cfg, log)) })
	cl := newClusterGlue(cfg, key, log, &rc)
	rooms := room.NewManager(ctx, w, rc)
	err = rooms.LoadRooms()
	if err == nil && cl != nil {
		err = cl.start(ctx, rooms)
	}
	if err != nil {
		rooms.Close()
		_ = w.Close()
		lan.close()
		cancel()
		return nil, err
	}
	keys := &rtmpKeys{} // its server is made below
	sig := signaling.New(rooms, signaling.Config{
		MaxMessage:   cfg.WSMaxMessage,
		PingInterval: cfg.WSPingInterval,
		PongTimeout:  cfg.WSPongTimeout,
		JoinTimeout:  cfg.WSJoinTimeout,
		MaxPerAddr:   cfg.WSMaxPerAddr,
		StreamKeys:   keys,
		Logger:       log,
	})
	if cl != nil {
		if err := cl.startMembers(ctx, sig); err != nil {
			_ = cl.close()
			rooms.Close()
			_ = w.Close()
			lan.close()
			cancel()
			return nil, err
		}
	}
	if created {
		log.Info("generated the admin API key (stored in the data dir; shown only this once)", "api_key", key)
	}
	s := &Server{cfg: cfg, log: log, worker: w, rooms: rooms, sig: sig, mux: http.NewServeMux(), cancel: cancel, apiKey: key, hlsKey: DeriveHLSKey(key), lan: lan, web: web.New(web.Options{ValidRoom: room.ValidID}), cluster: cl}
	if cl != nil {
		cl.s = s
	}
	s.ingests = ingest.New(rooms, cfg, log)
	keys.s = s
	s.mux.Handle("GET /ws", sig)
	s.mux.HandleFunc("GET /ws/alive", signaling.Alive)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mountWHIP()
	s.mountMetrics()
	s.mux.HandleFunc("GET /ca.crt", s.serveCA)
	s.mux.HandleFunc("GET /ca.mobileconfig", s.serveMobileConfig)
	s.mountLAN() // /api/lan, /qr.png, /help/trust (lanhttp.go)
	// Recordings, live HLS, file playback (recording.go).
	s.mountRecordings()
	s.mountAPI() // /api/... (package rest) and /media/... (api.go)
	s.mux.Handle("/", s.web)
	return s, nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	rest.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Handler returns the server's HTTP routes; in cluster mode requests for
// rooms of other nodes are sent there first (cluster.go).
func (s *Server) Handler() http.Handler {
	if s.cluster != nil {
		return s.cluster.handler(s.mux)
	}
	return s.mux
}

// Rooms returns the room manager.
func (s *Server) Rooms() *room.Manager { return s.rooms }

// MediaAddrs returns the UDP addresses media is received on.
func (s *Server) MediaAddrs() []net.Addr { return s.worker.ListenAddrs() }

// Close disconnects every client, closes every room and the UDP port.
func (s *Server) Close() error {
	s.closeRecordings()
	s.ingests.CloseRTMP()
	s.sig.Close()
	s.whip.Close()
	s.rooms.Close()
	// The rooms have ended here: their leases go now, not before.
	if cerr := s.cluster.close(); cerr != nil {
		s.log.Warn("cluster: leaving", "err", cerr)
	}
	err := s.worker.Close()
	s.lan.close()
	s.cancel()
	if err != nil {
		return fmt.Errorf("close worker: %w", err)
	}
	return nil
}

// publisherStart is the media core's PublisherStartBitrate for the
// configuration's: 0 there turns the hint off, which the core spells -1.
func publisherStart(bps int) int {
	if bps == 0 {
		return -1
	}
	return bps
}

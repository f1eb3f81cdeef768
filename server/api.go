package server

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
)

// partyConfig is the room manager's configuration.
func partyConfig(cfg config.Config, apiKey string, log *slog.Logger) room.Config {
	off := func(v float64) float64 { // 0 in the config means "no limit"
		if v == 0 {
			return -1
		}
		return v
	}
	addrRate := off(cfg.ChatAddrRate)
	if cfg.ChatRate == 0 { // no chat limit means none per person either
		addrRate = -1
	}
	history := cfg.ChatHistory
	if history == 0 {
		history = -1
	}
	retries := cfg.WebhookRetries
	if retries == 0 {
		retries = -1
	}
	secret := cfg.WebhookSecret
	if secret == "" {
		secret = apiKey
	}
	return room.Config{
		MaxPeers:  cfg.MaxPeers,
		OpenRooms: cfg.OpenRooms,
		Logger:    log,
		TokenKey:  room.DeriveTokenKey(apiKey),
		StorePath: filepath.Join(cfg.DataDir, "rooms.json"),
		MediaDir:  cfg.MediaDir,
		Webhook: room.WebhookConfig{
			URL:       cfg.WebhookURL,
			Secret:    []byte(secret),
			Retries:   retries,
			RetryBase: cfg.WebhookBackoff,
			Timeout:   cfg.WebhookTimeout,
			Queue:     cfg.WebhookQueue,
		},
		Chat: room.ChatConfig{
			History:       history,
			MaxLength:     cfg.ChatMaxLength,
			Rate:          off(cfg.ChatRate),
			Burst:         cfg.ChatBurst,
			AddrRate:      addrRate,
			AddrBurst:     cfg.ChatAddrBurst,
			ReactionRate:  off(cfg.ReactionRate),
			ReactionBurst: cfg.ReactionBurst,
		},
		Passwords: room.PasswordLimits{
			Conn:   cfg.PasswordFailsConn,
			Addr:   cfg.PasswordFailsAddr,
			Room:   cfg.PasswordFailsRoom,
			Window: cfg.PasswordFailWindow,
		},
		Sync: room.SyncConfig{
			NudgeThreshold: cfg.SyncNudgeThreshold,
			SeekThreshold:  cfg.SyncSeekThreshold,
			MaxNudge:       cfg.SyncMaxNudge,
			ReportInterval: cfg.SyncReportInterval,
			WaitTimeout:    cfg.SyncWaitTimeout,
			QueueMax:       cfg.QueueMax,
			SubtitleMax:    cfg.SubtitleMaxTracks,
		},
		Grace: cfg.ReconnectGrace,
	}
}

// mountAPI adds the REST API (package rest: rooms, tokens,
// participants, recordings, ingests and stream keys under /api) and the
// media folder to the routes.
func (s *Server) mountAPI() {
	s.api = rest.New(rest.Config{
		Rooms:    s.rooms,
		Recorder: s.rec.mgr,
		APIKey:   s.apiKey,
		MaxBody:  s.cfg.APIMaxBody,
		BaseURL:  s.baseURL,
		SignHLS:  func(roomID string, exp int64) string { return SignHLS(s.hlsKey, roomID, exp) },
		Ingests:  ingestAPI{s: s.ingests},
		RTMP:     &rtmpKeys{s: s},
		Logger:   s.log,
		Extra: []rest.Route{{Method: "GET", Path: "/api/lan", Auth: rest.Public, Handler: s.serveLAN,
			OperationID: "lanLinks", Summary: "The links phones on the LAN open, their QR code, and where to get the local CA",
			Query:  `[{"name":"room","in":"query","required":false,"schema":{"type":"string"},"description":"Give the room's join links instead of the lobby's."}]`,
			Status: 200, Answer: "The links", Result: rest.Ref("LANInfo")},
			{Method: "GET", Path: "/api/cluster", Auth: rest.Admin, Handler: s.apiCluster,
				OperationID: "getCluster", Summary: "The nodes of the cluster (cluster mode, --redis; docs/cluster.md)",
				Status: 200, Answer: "The registry", Result: rest.Ref("Cluster"), Errors: []int{503}}},
	})
	s.api.Mount(s.mux)
	s.mux.HandleFunc("GET /media/{path...}", s.serveMedia)
	// WHIP and WHEP accept join tokens too; a viewer's may not publish.
	s.SetTokenValidator(func(roomID, token string, publish bool) error {
		c, err := s.rooms.VerifyToken(roomID, token)
		if err != nil {
			return err
		}
		if publish && c.Role == room.RoleViewer {
			return errors.New("a viewer's token cannot publish")
		}
		return nil
	})
}

// APIRoutes lists the REST API's routes as "METHOD /path" patterns.
func (s *Server) APIRoutes() []string {
	var out []string
	for _, rt := range s.api.Routes() {
		out = append(out, rt.Method+" "+rt.Path)
	}
	return out
}

// baseURL is where browsers reach this server: --public-url, else
// https:// + the first LAN address + the HTTPS port, else the request's
// host.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	reqHost, reqPort, err := net.SplitHostPort(r.Host)
	if err != nil {
		reqHost, reqPort = r.Host, ""
	}
	port := reqPort
	if _, p, err := net.SplitHostPort(s.cfg.Addr); err == nil && p != "" && p != "0" {
		port = p
	}
	host := reqHost
	if addrs := s.lanAddrs(); len(addrs) > 0 {
		host = addrs[0].String()
	}
	if port == "" || port == "443" {
		return "https://" + hostForURL(host)
	}
	return "https://" + net.JoinHostPort(host, port)
}

func hostForURL(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

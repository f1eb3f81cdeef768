package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/matinee-dev/matinee/certs"
)

// lanAddrs lists the addresses phones on the LAN can reach.
func (s *Server) lanAddrs() []netip.Addr { return lanAddrsOf(s.cfg, s.log) }

// Run serves HTTPS on cfg.Addr (and plain HTTP on cfg.HTTPAddr) until ctx
// ends, then shuts the listeners down gracefully.
func (s *Server) Run(ctx context.Context) error {
	cm, err := certs.New(ctx, certs.Config{
		DataDir:  s.cfg.DataDir,
		CertFile: s.cfg.CertFile,
		KeyFile:  s.cfg.KeyFile,
		CAROOT:   s.cfg.CADir,
		Addrs:    s.lanAddrs,
		Hosts:    s.cfg.AnnounceIPs, // phones may come by the announced name
		Logger:   s.log,
	})
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	defer cm.Close()
	s.certs.Store(cm)

	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	s.httpsPort.Store(int32(portOf(ln.Addr())))
	// With ICE-TCP on the HTTPS port, TLS connections stay here and
	// ICE-TCP ones go to the media worker (lan.go).
	ln = s.lan.split(ln)
	hs := &http.Server{Handler: s.Handler(), TLSConfig: cm.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	var plain *http.Server
	if s.cfg.HTTPAddr != "" {
		pln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			_ = hs.Close()
			return fmt.Errorf("listen %s: %w", s.cfg.HTTPAddr, err)
		}
		plain = &http.Server{Handler: s.plainHandler(portOf(ln.Addr())), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- plain.Serve(pln) }()
	}
	if s.cfg.RTMPAddr != "" {
		rln, err := net.Listen("tcp", s.cfg.RTMPAddr)
		if err != nil {
			_ = hs.Close()
			if plain != nil {
				_ = plain.Close()
			}
			return fmt.Errorf("listen rtmp %s: %w", s.cfg.RTMPAddr, err)
		}
		go func() {
			if err := s.ServeRTMP(rln); err != nil {
				s.log.Error("rtmp server stopped", "err", err)
			}
		}()
		s.log.Info("rtmp ingest listening", "addr", rln.Addr().String())
	}
	if s.cfg.RTMPSAddr != "" {
		rln, err := net.Listen("tcp", s.cfg.RTMPSAddr)
		if err != nil {
			_ = hs.Close()
			if plain != nil {
				_ = plain.Close()
			}
			s.ingests.CloseRTMP()
			return fmt.Errorf("listen rtmps %s: %w", s.cfg.RTMPSAddr, err)
		}
		go func() {
			if err := s.ingests.ServeRTMPS(rln, cm.TLSConfig()); err != nil {
				s.log.Error("rtmps server stopped", "err", err)
			}
		}()
		s.log.Info("rtmps ingest listening", "addr", rln.Addr().String())
	}
	s.logStartup(portOf(ln.Addr()))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Recordings first, so they end as "server shutting down" rather than
	// as rooms emptying when the sockets close.
	s.closeRecordings()
	s.ingests.CloseRTMPServer()
	s.sig.Close() // WebSockets are hijacked: Shutdown does not wait for them
	_ = hs.Shutdown(shCtx)
	if plain != nil {
		_ = plain.Shutdown(shCtx)
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

// plainHandler serves what a phone needs before it trusts the CA, and
// redirects everything else to HTTPS.
func (s *Server) plainHandler(httpsPort int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ca.crt", s.serveCA)
	mux.HandleFunc("GET /ca.mobileconfig", s.serveMobileConfig)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /help/trust", s.serveTrustHelp)
	// The help page's stylesheet and icons: a phone reads it here before
	// it trusts the CA that HTTPS needs.
	mux.Handle("/static/", s.web.Static())
	mux.Handle("/favicon.ico", s.web.Static())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		target := "https://" + net.JoinHostPort(host, strconv.Itoa(httpsPort)) + r.URL.RequestURI()
		http.Redirect(w, r, target, http.StatusFound)
	})
	return mux
}

func (s *Server) serveCA(w http.ResponseWriter, _ *http.Request) {
	cm := s.certs.Load()
	if cm == nil || cm.CAPEM() == nil {
		http.Error(w, "this server uses its own certificate (--cert); there is no local CA to download", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-cert")
	w.Header().Set("Content-Disposition", `attachment; filename="matinee-ca.crt"`)
	_, _ = w.Write(cm.CAPEM())
}

func (s *Server) serveMobileConfig(w http.ResponseWriter, _ *http.Request) {
	cm := s.certs.Load()
	if cm == nil || cm.CAPEM() == nil {
		http.Error(w, "no local CA", http.StatusNotFound)
		return
	}
	b, err := certs.MobileConfig(cm.CAPEM(), "Matinee")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", certs.MobileConfigType)
	w.Header().Set("Content-Disposition", `attachment; filename="matinee.mobileconfig"`)
	_, _ = w.Write(b)
}

// Package config holds Matinee's one configuration struct. Flags and
// MATINEE_* environment variables fill it; the zero-config defaults from
// Default run a working server with no file and no external service.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// Config is every setting of a Matinee server. Each field names its flag; the
// environment variable is MATINEE_ plus the flag in upper case with dashes as
// underscores (--udp-port → MATINEE_UDP_PORT).
type Config struct {
	// Addr is the HTTPS listen address (--addr).
	Addr string
	// HTTPAddr is the plain-HTTP listen address that serves the CA and
	// redirects the rest to HTTPS (--http-addr); empty disables it.
	HTTPAddr string
	// DataDir holds state: certificates, keys, recordings (--data-dir).
	DataDir string
	// CertFile and KeyFile, when both set, are served instead of the
	// generated certificate (--cert, --key).
	CertFile, KeyFile string
	// CADir is a directory holding the CA to sign the leaf with,
	// rootCA.pem and rootCA-key.pem (--ca-dir): the nodes of a cluster
	// share one CA this way. Empty: $CAROOT (mkcert), else DataDir/ca.
	CADir string

	// UDPPort is the one UDP port all ICE media uses (--udp-port). 0 picks
	// an ephemeral port per address (tests).
	UDPPort int
	// ICEInterfaces restricts ICE gathering to these interface names
	// (--ice-interface, repeatable); empty means every usable interface.
	ICEInterfaces []string
	// ICELoopbackOnly gathers only on loopback, for tests and single-host
	// use (--ice-loopback-only).
	ICELoopbackOnly bool
	// AnnounceIPs replaces the host candidates' addresses, for 1:1 NAT and
	// port forwarding (--announce-ip, repeatable). Each is an IP address or
	// a DNS name, resolved once at start.
	AnnounceIPs []string
	// ICETCPPort is the TCP port for ICE-TCP, the fallback of networks
	// that block UDP (--ice-tcp-port); 0 disables it. The default,
	// ICETCPSameAsHTTPS, shares the HTTPS listener, whatever port --addr
	// gives it (as does naming that port). ICE-TCP candidates are
	// advertised only once that listener serves (Server.Run), on the port
	// it is bound to.
	ICETCPPort int
	// TURN runs the embedded TURN server (--turn), for networks where
	// neither UDP nor ICE-TCP reaches the SFU. Clients get short-lived
	// credentials for it when they join.
	TURN bool
	// TURNPort is the TURN server's UDP and TCP port (--turn-port).
	TURNPort int
	// TURNCredentialTTL is how long TURN credentials handed out at join
	// stay valid (--turn-credential-ttl); a relayed call longer than this
	// loses its relay.
	TURNCredentialTTL time.Duration

	// ConnectTimeout is how long a transport may take to complete ICE and
	// DTLS before its peer is removed (--connect-timeout).
	ConnectTimeout time.Duration
	// WSMaxMessage is the largest WebSocket message accepted, in bytes; a
	// larger one closes the socket with status 1009 (--ws-max-message).
	WSMaxMessage int64
	// WSPingInterval is how often the server pings each WebSocket
	// (--ws-ping-interval).
	WSPingInterval time.Duration
	// WSPongTimeout is how long a silent WebSocket lives before its peer is
	// removed (--ws-pong-timeout).
	WSPongTimeout time.Duration
	// WSJoinTimeout is how long a WebSocket may stay open without being
	// in a room, at its start and after a leave (--ws-join-timeout);
	// then it is closed with status 1008.
	WSJoinTimeout time.Duration
	// WSMaxPerAddr is how many WebSockets one remote address may hold
	// open at once (--ws-max-per-addr); more are refused with HTTP 429.
	// 0: no limit. Behind a reverse proxy every client has the proxy's
	// address, so raise it or turn it off there.
	WSMaxPerAddr int
	// PasswordFailsConn, PasswordFailsAddr and PasswordFailsRoom are how
	// many wrong room passwords one connection, one remote address and
	// one room may see within PasswordFailWindow (--password-fails-conn,
	// --password-fails-addr, --password-fails-room,
	// --password-fail-window). Past any of them a join with a password is
	// refused with 1008 and retryAfterMs before the password is hashed,
	// and a connection that tries again before that time is closed.
	PasswordFailsConn  int
	PasswordFailsAddr  int
	PasswordFailsRoom  int
	PasswordFailWindow time.Duration
	// MaxPeers is the default limit of peers per room (--max-peers).
	MaxPeers int
	// WHEPMaxViewers is how many WHEP viewers may watch one room at once
	// (--whep-max-viewers); they are not members, so max-peers does not
	// count them. 0 turns WHEP off.
	WHEPMaxViewers int
	// OpenRooms lets anyone create a room by opening its link
	// (--open-rooms); when false only rooms made through the API exist.
	OpenRooms bool
	// NACKHistory is how many packets each published video layer keeps to
	// answer its subscribers' NACKs (--nack-history), one copy shared by
	// all of them; about 1 s of 2 Mbit/s video at 256.
	NACKHistory int
	// GCPercent is the Go garbage collector's target (--gc-percent, Go's
	// GOGC): how far the heap may grow past what is live before the next
	// collection, in percent. Below Go's 100 the server keeps less memory
	// per subscriber (0.36–0.39 → 0.31 MB RSS at 50, docs/benchmarks.md)
	// for collections that cost well under 1 % of a core at 100
	// subscribers. 0 leaves Go's choice; a GOGC variable in the
	// environment takes precedence.
	GCPercent int
	// PublisherStartBitrate, in bits per second, is where a publishing
	// browser's congestion control is told to start
	// (--publisher-start-bitrate; 0: not told, Chromium then starts at
	// 300 kbit/s and a share at a quarter of its size).
	PublisherStartBitrate int

	// APIKey authorises admin calls of the REST API (--api-key). Empty:
	// generated on first start, stored in DataDir/api-key, printed once.
	APIKey string

	// PublicURL is the base of the join links the API hands out, e.g.
	// https://tv.lan:8443 (--public-url). Empty: https:// + the first LAN
	// address + the HTTPS port (or the Host the API request came to).
	PublicURL string
	// APIMaxBody is the largest REST API request body in bytes
	// (--api-max-body); a larger one is refused with 413.
	APIMaxBody int64

	// WebhookURL receives a signed POST for every room event
	// (--webhook-url); empty turns webhooks off.
	WebhookURL string
	// WebhookSecret keys the HMAC-SHA256 signature of webhook deliveries
	// (--webhook-secret); empty: the API key.
	WebhookSecret string
	// WebhookRetries is how many times a failed delivery is retried, with
	// exponential backoff (--webhook-retries); 0: never.
	WebhookRetries int
	// WebhookBackoff is the wait before the first retry; it doubles with
	// each retry, up to a minute (--webhook-backoff).
	WebhookBackoff time.Duration
	// WebhookTimeout bounds one delivery attempt (--webhook-timeout).
	WebhookTimeout time.Duration
	// WebhookQueue is how many events may wait for delivery; beyond it
	// events are dropped and logged (--webhook-queue).
	WebhookQueue int

	// MediaDir is a folder of videos hosts can pick to watch together,
	// served at /media/ with range requests (--media-dir); empty: none.
	MediaDir string

	// FFmpeg is the ffmpeg binary that recordings (Opus→AAC, VP8/VP9→H.264)
	// and file playback run (--ffmpeg); empty: "ffmpeg" from $PATH.
	FFmpeg string
	// RecordMinFreeMB is the free disk space in MiB below which a
	// recording refuses to start (--record-min-free-mb); running
	// recordings stop cleanly below a quarter of it.
	RecordMinFreeMB int
	// RecordReserveMB is the disk space in MiB each running recording
	// holds back (--record-reserve-mb) and frees when it stops, so that a
	// recording stopped by a full disk can still finish its files; 0: none.
	RecordReserveMB int
	// PlainListenIP is the address plain-RTP transports listen on, for
	// files streamed into a room (--plain-listen-ip).
	PlainListenIP string

	// RTMPAddr is where the RTMP server takes publishers with a room's
	// stream key (--rtmp-addr, default :1935; empty: off).
	RTMPAddr string
	// RTMPSAddr is the same server over TLS, with the HTTPS certificate
	// (--rtmps-addr; empty, the default: off).
	RTMPSAddr string
	// RTMPMaxChunkSize is the largest chunk size a publisher may set
	// (--rtmp-max-chunk-size), RTMPMaxMessageSize the largest message, a
	// video frame (--rtmp-max-message-size).
	RTMPMaxChunkSize   int
	RTMPMaxMessageSize int
	// RTMPHandshakeTimeout bounds the handshake through publish; a
	// publisher silent, or slower than a message per RTMPIdleTimeout, is
	// dropped (--rtmp-handshake-timeout, --rtmp-idle-timeout).
	RTMPHandshakeTimeout time.Duration
	RTMPIdleTimeout      time.Duration
	// RTMPMaxConns is the most RTMP connections at once
	// (--rtmp-max-conns).
	RTMPMaxConns int
	// RTMPResumeGrace is how long a publisher that dropped keeps its
	// place: back with the same key within it, it goes on as the same
	// stage, viewers keeping their tracks (--rtmp-resume-grace; 0: none).
	RTMPResumeGrace time.Duration

	// ChatHistory is how many chat messages a late joiner receives
	// (--chat-history).
	ChatHistory int
	// ChatMaxLength is the longest chat message in characters
	// (--chat-max-length).
	ChatMaxLength int
	// ChatRate is chat messages per second a member may send on average,
	// ChatBurst how many at once (--chat-rate, --chat-burst); rate 0: no
	// limit.
	ChatRate  float64
	ChatBurst int
	// ChatAddrRate and ChatAddrBurst limit chat from one person: all the
	// members of one token identity, or all the members without a token
	// from one remote address, together (--chat-addr-rate,
	// --chat-addr-burst); rate 0 (or a chat-rate of 0): no limit.
	// Leaving and joining again resets neither this nor the
	// per-connection limit.
	ChatAddrRate  float64
	ChatAddrBurst int
	// ReactionRate and ReactionBurst limit emoji reactions the same way
	// (--reaction-rate, --reaction-burst).
	ReactionRate  float64
	ReactionBurst int

	// SyncNudgeThreshold: a player closer than this to the room's
	// position is left alone; farther, it nudges its playback rate
	// (--sync-nudge-threshold).
	SyncNudgeThreshold time.Duration
	// SyncSeekThreshold: a player farther than this seeks instead
	// (--sync-seek-threshold).
	SyncSeekThreshold time.Duration
	// SyncMaxNudge is the largest relative rate change of a nudge, e.g.
	// 0.1 for 0.9x-1.1x (--sync-max-nudge).
	SyncMaxNudge float64
	// SyncReportInterval is how often players report their position
	// (--sync-report-interval).
	SyncReportInterval time.Duration
	// SyncWaitTimeout is how long "wait for everyone" holds the room for
	// a member that keeps buffering (--sync-wait-timeout).
	SyncWaitTimeout time.Duration
	// QueueMax is the most videos a room's queue holds (--queue-max).
	QueueMax int
	// SubtitleMaxTracks is the most subtitle tracks one video may have
	// (--subtitle-max-tracks); SubtitleMaxBytes the largest SubRip file
	// served converted to WebVTT (--subtitle-max-bytes).
	SubtitleMaxTracks int
	SubtitleMaxBytes  int64

	// ReconnectGrace is how long a member whose connection dropped keeps
	// its place (role, name, state) for the same person to come back, and
	// how long a room whose members all dropped stays open
	// (--reconnect-grace; 0: members leave when their connection does).
	ReconnectGrace time.Duration

	// Redis turns cluster mode on: the nodes of one cluster share this
	// Redis, redis://HOST:6379/0 (--redis; docs/cluster.md). Empty: one
	// node on its own, nothing external.
	Redis string
	// NodeID names this node in the cluster (--node-id); empty: the host
	// name and the HTTPS port.
	NodeID string
	// NodeURL is this node's base URL, where clients of other nodes are
	// sent for its rooms (--node-url); empty: --public-url, else https://
	// the first LAN address and the HTTPS port.
	NodeURL string
	// Region is an optional label of the node in the registry (--region).
	Region string
	// ClusterLeaseRenew is how often a node renews its registry record and
	// its rooms' leases (--cluster-lease-renew); ClusterLeaseTTL how long
	// they last without renewal (--cluster-lease-ttl): a node silent that
	// long is gone and its rooms can be taken by others.
	ClusterLeaseRenew time.Duration
	ClusterLeaseTTL   time.Duration
	// RelayViewers serves a WHEP viewer of another node's room here, as
	// an edge fed by one pipe from the room's node, instead of sending it
	// there with 307 (--relay-viewers; cluster mode only).
	RelayViewers bool
	// RelayIdleGrace is how long an edge with no viewers left keeps its
	// pipe (--relay-idle-grace).
	RelayIdleGrace time.Duration
	// RelayKeyframeInterval is the shortest time between two keyframe
	// requests that all pipes together pass to one layer of a sharer
	// (--relay-keyframe-interval): edges ask for their many viewers.
	RelayKeyframeInterval time.Duration
	// RelayIP is the address this node's pipe ends listen on and announce
	// (--relay-ip; default: the host of --node-url when it is an IP, else
	// the first LAN address).
	RelayIP string
	// RelayMaxPipes bounds the pipes this node sends to edges, all rooms
	// together, as a room's origin and as a sub-origin piping on from its
	// edge (--relay-max-pipes); past it, an origin points the edge at the
	// edges it feeds (a second level, docs/cluster.md), and when none
	// pipes, the edge's viewer is sent here with 307.
	RelayMaxPipes int
	// RelayMembers keeps a WebSocket member of another node's room on
	// this node (--relay-members): its requests go to the room's node,
	// which stays the party's one authority, and its media comes from
	// this node's edge copy of the room; off, the join answers 1010 and
	// the client moves there. On by default; needs RelayViewers.
	RelayMembers bool
	// RelayMemberMaxMessage is the largest message between nodes about
	// such members (--relay-member-max-message): one frame of a member's
	// (a join result with its chat history) must fit.
	RelayMemberMaxMessage int
	// RelayMaxMembers bounds the members of this node's rooms served on
	// other nodes (--relay-max-members); past it they move here (1010).
	RelayMaxMembers int
	// RelayPlaceViewers places a viewer of another node's room (a WHEP
	// viewer, or a member served on an edge) on a node that carries the
	// room and has headroom, else on a new node by two random choices
	// (--relay-place-viewers; docs/cluster.md, "Placement"). Off: it is
	// served where it arrives, as an edge of the room.
	RelayPlaceViewers bool
	// NodeMaxPeers and NodeMaxCPU are this node's headroom for placing
	// viewers (--node-max-peers: members and viewers together;
	// --node-max-cpu: the share of all cores the process uses, 0-1). A
	// node past either gets no viewers sent to it, and sends those that
	// reach it to a node that has headroom, if any: it never refuses
	// them. Zero: no limit.
	NodeMaxPeers int
	NodeMaxCPU   float64

	// LogFormat is "text" or "json" (--log-format); LogLevel is debug,
	// info, warn or error (--log-level).
	LogFormat, LogLevel string
}

// ICETCPSameAsHTTPS, as ICETCPPort, puts ICE-TCP on the HTTPS port.
const ICETCPSameAsHTTPS = -1

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Addr:                  ":8443",
		HTTPAddr:              ":8080",
		DataDir:               defaultDataDir(),
		UDPPort:               8443,
		ConnectTimeout:        15 * time.Second,
		WSMaxMessage:          64 << 10,
		WSPingInterval:        10 * time.Second,
		WSPongTimeout:         20 * time.Second,
		WSJoinTimeout:         10 * time.Second,
		WSMaxPerAddr:          32,
		MaxPeers:              50,
		WHEPMaxViewers:        200,
		OpenRooms:             true,
		NACKHistory:           512,
		GCPercent:             50,
		PublisherStartBitrate: 4_000_000,
		APIMaxBody:            64 << 10,
		RecordMinFreeMB:       1024,
		RecordReserveMB:       4,
		PlainListenIP:         "127.0.0.1",

		RTMPAddr:             ":1935",
		RTMPMaxChunkSize:     64 << 10,
		RTMPMaxMessageSize:   4 << 20,
		RTMPHandshakeTimeout: 10 * time.Second,
		RTMPIdleTimeout:      10 * time.Second,
		RTMPMaxConns:         64,
		RTMPResumeGrace:      10 * time.Second,
		WebhookRetries:       5,
		WebhookBackoff:       time.Second,
		WebhookTimeout:       5 * time.Second,
		WebhookQueue:         256,
		ChatHistory:          200,
		ChatMaxLength:        1000,
		ChatRate:             1,
		ChatBurst:            5,
		ChatAddrRate:         5,
		ChatAddrBurst:        20,
		ReactionRate:         4,
		ReactionBurst:        10,

		PasswordFailsConn:  5,
		PasswordFailsAddr:  20,
		PasswordFailsRoom:  100,
		PasswordFailWindow: time.Minute,

		SyncNudgeThreshold: 40 * time.Millisecond,
		SyncSeekThreshold:  400 * time.Millisecond,
		SyncMaxNudge:       0.1,
		SyncReportInterval: time.Second,
		SyncWaitTimeout:    20 * time.Second,
		QueueMax:           50,
		SubtitleMaxTracks:  20,
		SubtitleMaxBytes:   8 << 20,
		ReconnectGrace:     60 * time.Second,

		ICETCPPort:        ICETCPSameAsHTTPS,
		TURNPort:          3478,
		TURNCredentialTTL: 12 * time.Hour,

		ClusterLeaseRenew:     2 * time.Second,
		ClusterLeaseTTL:       6 * time.Second,
		RelayViewers:          true,
		RelayIdleGrace:        5 * time.Second,
		RelayKeyframeInterval: time.Second,
		RelayMaxPipes:         100,
		RelayMembers:          true,
		RelayMemberMaxMessage: 1 << 20,
		RelayMaxMembers:       1000,
		RelayPlaceViewers:     true,
		NodeMaxCPU:            0.85,

		LogFormat: "text",
		LogLevel:  "info",
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "matinee")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "matinee")
	}
	return "matinee-data"
}

// Validate reports the first setting that is out of range, naming it.
func (c *Config) Validate() error {
	var errs []error
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		errs = append(errs, fmt.Errorf("udp-port %d: out of range 0-65535", c.UDPPort))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("connect-timeout %s: must be positive", c.ConnectTimeout))
	}
	if c.WSMaxMessage < 1024 {
		errs = append(errs, fmt.Errorf("ws-max-message %d: must be at least 1024", c.WSMaxMessage))
	}
	if c.WSPingInterval <= 0 || c.WSPongTimeout <= c.WSPingInterval {
		errs = append(errs, fmt.Errorf("ws-pong-timeout %s must exceed ws-ping-interval %s", c.WSPongTimeout, c.WSPingInterval))
	}
	if c.WSJoinTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ws-join-timeout %s: must be at least 100ms", c.WSJoinTimeout))
	}
	if c.WSMaxPerAddr < 0 {
		errs = append(errs, fmt.Errorf("ws-max-per-addr %d: must be 0 (no limit) or more", c.WSMaxPerAddr))
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"password-fails-conn", c.PasswordFailsConn}, {"password-fails-addr", c.PasswordFailsAddr}, {"password-fails-room", c.PasswordFailsRoom}} {
		if f.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be at least 1", f.name, f.n))
		}
	}
	if c.PasswordFailWindow < time.Second || c.PasswordFailWindow > 24*time.Hour {
		errs = append(errs, fmt.Errorf("password-fail-window %s: must be 1s-24h", c.PasswordFailWindow))
	}
	if c.RTMPMaxChunkSize < 128 || c.RTMPMaxChunkSize > 1<<24 {
		errs = append(errs, fmt.Errorf("rtmp-max-chunk-size %d: must be 128-16777216", c.RTMPMaxChunkSize))
	}
	if c.RTMPMaxMessageSize < 64<<10 || c.RTMPMaxMessageSize > 16<<20 {
		errs = append(errs, fmt.Errorf("rtmp-max-message-size %d: must be 65536-16777216", c.RTMPMaxMessageSize))
	}
	if c.RTMPHandshakeTimeout < 100*time.Millisecond || c.RTMPIdleTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("rtmp-handshake-timeout %s, rtmp-idle-timeout %s: must be at least 100ms", c.RTMPHandshakeTimeout, c.RTMPIdleTimeout))
	}
	if c.RTMPResumeGrace < 0 {
		errs = append(errs, fmt.Errorf("rtmp-resume-grace %s: must not be negative", c.RTMPResumeGrace))
	}
	if c.RTMPMaxConns < 1 {
		errs = append(errs, fmt.Errorf("rtmp-max-conns %d: must be at least 1", c.RTMPMaxConns))
	}
	if c.MaxPeers < 1 {
		errs = append(errs, fmt.Errorf("max-peers %d: must be at least 1", c.MaxPeers))
	}
	if c.WHEPMaxViewers < 0 {
		errs = append(errs, fmt.Errorf("whep-max-viewers %d: must be 0 (WHEP off) or more", c.WHEPMaxViewers))
	}
	if c.PublisherStartBitrate < 0 || c.PublisherStartBitrate > 100_000_000 {
		errs = append(errs, fmt.Errorf("publisher-start-bitrate %d: must be 0 (off) to 100000000", c.PublisherStartBitrate))
	}
	if c.NACKHistory < 16 || c.NACKHistory > 32768 || c.NACKHistory&(c.NACKHistory-1) != 0 {
		errs = append(errs, fmt.Errorf("nack-history %d: must be a power of two in 16-32768", c.NACKHistory))
	}
	if c.GCPercent != 0 && (c.GCPercent < 10 || c.GCPercent > 1000) {
		errs = append(errs, fmt.Errorf("gc-percent %d: must be 0 (Go's default) or 10-1000", c.GCPercent))
	}
	if c.RecordReserveMB < 0 || c.RecordReserveMB > 1024 {
		errs = append(errs, fmt.Errorf("record-reserve-mb %d: must be 0-1024", c.RecordReserveMB))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert and key must be given together"))
	}
	if c.CADir != "" {
		if _, err := os.Stat(filepath.Join(c.CADir, "rootCA.pem")); err != nil {
			errs = append(errs, fmt.Errorf("ca-dir %q: no rootCA.pem there (copy the ca/ directory of a node's data dir): %w", c.CADir, err))
		}
	}
	errs = append(errs, c.validateParty()...)
	errs = append(errs, c.validateLAN()...)
	errs = append(errs, c.validateCluster()...)
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// validateParty checks the API, webhook, media, chat and sync settings.
func (c *Config) validateParty() []error {
	var errs []error
	checkURL := func(name, v string) {
		if v == "" {
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http:// or https:// URL", name, v))
		}
	}
	checkURL("public-url", c.PublicURL)
	checkURL("webhook-url", c.WebhookURL)
	if c.APIMaxBody < 1024 || c.APIMaxBody > 64<<20 {
		errs = append(errs, fmt.Errorf("api-max-body %d: must be 1024-%d", c.APIMaxBody, 64<<20))
	}
	if c.WebhookRetries < 0 || c.WebhookRetries > 20 {
		errs = append(errs, fmt.Errorf("webhook-retries %d: must be 0-20", c.WebhookRetries))
	}
	if c.WebhookBackoff < time.Millisecond || c.WebhookBackoff > time.Minute {
		errs = append(errs, fmt.Errorf("webhook-backoff %s: must be 1ms-1m", c.WebhookBackoff))
	}
	if c.WebhookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("webhook-timeout %s: must be positive", c.WebhookTimeout))
	}
	if c.WebhookQueue < 1 || c.WebhookQueue > 1<<20 {
		errs = append(errs, fmt.Errorf("webhook-queue %d: must be 1-%d", c.WebhookQueue, 1<<20))
	}
	if c.MediaDir != "" {
		if fi, err := os.Stat(c.MediaDir); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("media-dir %q: not a readable directory", c.MediaDir))
		}
	}
	if c.ChatHistory < 0 || c.ChatHistory > 10000 {
		errs = append(errs, fmt.Errorf("chat-history %d: must be 0-10000", c.ChatHistory))
	}
	if c.ChatMaxLength < 1 || c.ChatMaxLength > 100000 {
		errs = append(errs, fmt.Errorf("chat-max-length %d: must be 1-100000", c.ChatMaxLength))
	}
	if c.ChatRate < 0 || c.ReactionRate < 0 {
		errs = append(errs, fmt.Errorf("chat-rate %g / reaction-rate %g: must not be negative", c.ChatRate, c.ReactionRate))
	}
	if c.ChatAddrRate < 0 || c.ChatAddrBurst < 1 {
		errs = append(errs, fmt.Errorf("chat-addr-rate %g / chat-addr-burst %d: rate must not be negative, burst at least 1", c.ChatAddrRate, c.ChatAddrBurst))
	}
	if c.ChatBurst < 1 || c.ReactionBurst < 1 {
		errs = append(errs, fmt.Errorf("chat-burst %d / reaction-burst %d: must be at least 1", c.ChatBurst, c.ReactionBurst))
	}
	if c.SyncNudgeThreshold <= 0 || c.SyncSeekThreshold <= c.SyncNudgeThreshold {
		errs = append(errs, fmt.Errorf("sync-seek-threshold %s must exceed sync-nudge-threshold %s (> 0)", c.SyncSeekThreshold, c.SyncNudgeThreshold))
	}
	if c.SyncMaxNudge <= 0 || c.SyncMaxNudge > 0.5 {
		errs = append(errs, fmt.Errorf("sync-max-nudge %g: must be in (0, 0.5]", c.SyncMaxNudge))
	}
	if c.SyncReportInterval < 100*time.Millisecond || c.SyncReportInterval > time.Minute {
		errs = append(errs, fmt.Errorf("sync-report-interval %s: must be 100ms-1m", c.SyncReportInterval))
	}
	if c.QueueMax < 1 || c.QueueMax > 1000 {
		errs = append(errs, fmt.Errorf("queue-max %d: must be 1-1000", c.QueueMax))
	}
	// The ceilings are room.MaxSubtitleTracks and srt.MaxSize.
	if c.SubtitleMaxTracks < 1 || c.SubtitleMaxTracks > 100 {
		errs = append(errs, fmt.Errorf("subtitle-max-tracks %d: must be 1-100", c.SubtitleMaxTracks))
	}
	if c.SubtitleMaxBytes < 1024 || c.SubtitleMaxBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("subtitle-max-bytes %d: must be 1024-%d", c.SubtitleMaxBytes, 64<<20))
	}
	if c.SyncWaitTimeout < time.Second {
		errs = append(errs, fmt.Errorf("sync-wait-timeout %s: must be at least 1s", c.SyncWaitTimeout))
	}
	if c.ReconnectGrace < 0 || c.ReconnectGrace > time.Hour {
		errs = append(errs, fmt.Errorf("reconnect-grace %s: must be 0-1h", c.ReconnectGrace))
	}
	return errs
}

// ApplyGCPercent sets the process's garbage collector target to
// GCPercent, unless it is 0 or the environment (lookup; nil: the
// process's) sets GOGC, which then stays in force. It reports whether it
// set it. The target is the process's, not a server's: the binary applies
// it, not a server embedded in another program.
func (c Config) ApplyGCPercent(lookup func(string) (string, bool)) bool {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if c.GCPercent == 0 {
		return false
	}
	if _, ok := lookup("GOGC"); ok {
		return false
	}
	debug.SetGCPercent(c.GCPercent)
	return true
}

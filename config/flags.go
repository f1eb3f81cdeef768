package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// listFlag is a repeatable string flag; from the environment it takes a
// comma-separated list.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.p = append(*l.p, s)
		}
	}
	return nil
}

// BindFlags defines every setting as a flag of fs, defaulting to c's
// current values.
func BindFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "HTTPS listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "plain-HTTP listen address for the CA download and redirects (empty: off)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for certificates, keys and recordings")
	fs.StringVar(&c.CertFile, "cert", c.CertFile, "serve this certificate (PEM) instead of the generated one")
	fs.StringVar(&c.KeyFile, "key", c.KeyFile, "private key (PEM) for --cert")
	fs.StringVar(&c.CADir, "ca-dir", c.CADir, "sign the certificate with the CA in this directory (rootCA.pem, rootCA-key.pem), e.g. one shared by the nodes of a cluster (default: $CAROOT, else <data-dir>/ca)")
	fs.IntVar(&c.UDPPort, "udp-port", c.UDPPort, "the one UDP port for all WebRTC media")
	fs.Var(listFlag{&c.ICEInterfaces}, "ice-interface", "gather ICE candidates only on this interface (repeatable)")
	fs.BoolVar(&c.ICELoopbackOnly, "ice-loopback-only", c.ICELoopbackOnly, "gather ICE candidates on loopback only (single-host use and tests)")
	fs.Var(listFlag{&c.AnnounceIPs}, "announce-ip", "IP address or DNS name announced in ICE candidates instead of the local one, for 1:1 NAT (repeatable)")
	bindLANFlags(fs, c)
	bindClusterFlags(fs, c)
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", c.ConnectTimeout, "time a transport has to complete ICE and DTLS before its peer is removed")
	fs.Int64Var(&c.WSMaxMessage, "ws-max-message", c.WSMaxMessage, "largest WebSocket message in bytes; larger closes the socket with 1009")
	fs.DurationVar(&c.WSPingInterval, "ws-ping-interval", c.WSPingInterval, "WebSocket ping interval")
	fs.DurationVar(&c.WSPongTimeout, "ws-pong-timeout", c.WSPongTimeout, "a WebSocket silent for this long is closed and its peer removed")
	fs.DurationVar(&c.WSJoinTimeout, "ws-join-timeout", c.WSJoinTimeout, "a WebSocket not in a room for this long (at its start or after a leave) is closed with 1008")
	fs.IntVar(&c.WSMaxPerAddr, "ws-max-per-addr", c.WSMaxPerAddr, "WebSockets one remote address may hold open; more get HTTP 429 (0: no limit)")
	fs.IntVar(&c.PasswordFailsConn, "password-fails-conn", c.PasswordFailsConn, "wrong room passwords one connection may send per --password-fail-window")
	fs.IntVar(&c.PasswordFailsAddr, "password-fails-addr", c.PasswordFailsAddr, "wrong room passwords one remote address may send per --password-fail-window")
	fs.IntVar(&c.PasswordFailsRoom, "password-fails-room", c.PasswordFailsRoom, "wrong passwords one room may receive per --password-fail-window")
	fs.DurationVar(&c.PasswordFailWindow, "password-fail-window", c.PasswordFailWindow, "window of the --password-fails-* limits; past one, joins with a password get 1008 and retryAfterMs")
	fs.IntVar(&c.MaxPeers, "max-peers", c.MaxPeers, "peers per room")
	fs.IntVar(&c.WHEPMaxViewers, "whep-max-viewers", c.WHEPMaxViewers, "WHEP viewers per room (0 turns WHEP off)")
	fs.BoolVar(&c.OpenRooms, "open-rooms", c.OpenRooms, "opening /r/{room} creates the room")
	fs.IntVar(&c.PublisherStartBitrate, "publisher-start-bitrate", c.PublisherStartBitrate, "bits per second a publishing browser's congestion control starts at (0: not told)")
	fs.IntVar(&c.NACKHistory, "nack-history", c.NACKHistory, "packets each published video layer keeps to answer NACKs, shared by its subscribers (power of two)")
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent, "garbage collector target, as Go's GOGC (lower: less memory per subscriber, a little more CPU; 0: Go's default; $GOGC wins)")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "bearer key for the admin REST API (default: generated and stored in the data dir)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base of the join links the API hands out, e.g. https://tv.lan:8443 (default: first LAN address)")
	fs.Int64Var(&c.APIMaxBody, "api-max-body", c.APIMaxBody, "largest REST API request body in bytes; larger is refused with 413")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "POST signed room events (room started/finished, participant joined/left, ...) to this URL")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", c.WebhookSecret, "HMAC-SHA256 key of webhook signatures (default: the API key)")
	fs.IntVar(&c.WebhookRetries, "webhook-retries", c.WebhookRetries, "retries of a failed webhook delivery, with exponential backoff (0: none)")
	fs.DurationVar(&c.WebhookBackoff, "webhook-backoff", c.WebhookBackoff, "wait before the first webhook retry; doubles with each retry up to 1m")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", c.WebhookTimeout, "time limit of one webhook delivery attempt")
	fs.IntVar(&c.WebhookQueue, "webhook-queue", c.WebhookQueue, "webhook events that may wait for delivery; more are dropped and logged")
	fs.StringVar(&c.MediaDir, "media-dir", c.MediaDir, "folder of videos hosts can pick to watch together, served at /media/")
	fs.IntVar(&c.ChatHistory, "chat-history", c.ChatHistory, "chat messages a late joiner receives")
	fs.IntVar(&c.ChatMaxLength, "chat-max-length", c.ChatMaxLength, "longest chat message in characters")
	fs.Float64Var(&c.ChatRate, "chat-rate", c.ChatRate, "chat messages per second a member may send on average (0: no limit)")
	fs.IntVar(&c.ChatBurst, "chat-burst", c.ChatBurst, "chat messages a member may send at once")
	fs.Float64Var(&c.ChatAddrRate, "chat-addr-rate", c.ChatAddrRate, "chat messages per second one person (token identity, or remote address without a token) may send across all its connections (0: no limit)")
	fs.IntVar(&c.ChatAddrBurst, "chat-addr-burst", c.ChatAddrBurst, "chat messages one person or address may send at once")
	fs.Float64Var(&c.ReactionRate, "reaction-rate", c.ReactionRate, "reactions per second a member may send on average (0: no limit)")
	fs.IntVar(&c.ReactionBurst, "reaction-burst", c.ReactionBurst, "reactions a member may send at once")
	fs.DurationVar(&c.SyncNudgeThreshold, "sync-nudge-threshold", c.SyncNudgeThreshold, "synced playback: a larger gap is closed by nudging the playback rate")
	fs.DurationVar(&c.SyncSeekThreshold, "sync-seek-threshold", c.SyncSeekThreshold, "synced playback: a larger gap is closed by seeking")
	fs.Float64Var(&c.SyncMaxNudge, "sync-max-nudge", c.SyncMaxNudge, "synced playback: largest relative rate change of a nudge (0.1: 0.9x-1.1x)")
	fs.DurationVar(&c.SyncReportInterval, "sync-report-interval", c.SyncReportInterval, "synced playback: how often players report their position")
	fs.IntVar(&c.QueueMax, "queue-max", c.QueueMax, "synced playback: most videos a room's queue holds")
	fs.IntVar(&c.SubtitleMaxTracks, "subtitle-max-tracks", c.SubtitleMaxTracks, "synced playback: most subtitle tracks of one video")
	fs.Int64Var(&c.SubtitleMaxBytes, "subtitle-max-bytes", c.SubtitleMaxBytes, "largest SubRip file of the media folder served converted to WebVTT")
	fs.DurationVar(&c.SyncWaitTimeout, "sync-wait-timeout", c.SyncWaitTimeout, "synced playback: longest hold for a member that keeps buffering")
	fs.DurationVar(&c.ReconnectGrace, "reconnect-grace", c.ReconnectGrace, "how long a dropped member keeps its role and place, and a room whose members all dropped stays, for them to come back (0: none)")
	fs.StringVar(&c.FFmpeg, "ffmpeg", c.FFmpeg, "ffmpeg binary for recordings and file playback (default: ffmpeg from PATH)")
	fs.IntVar(&c.RecordMinFreeMB, "record-min-free-mb", c.RecordMinFreeMB, "free disk space (MiB) needed to start a recording; recordings stop below a quarter of it")
	fs.IntVar(&c.RecordReserveMB, "record-reserve-mb", c.RecordReserveMB, "disk space (MiB) each running recording holds back to finish its files if the disk fills up (0: none)")
	fs.StringVar(&c.PlainListenIP, "plain-listen-ip", c.PlainListenIP, "address plain-RTP transports (files streamed into rooms) listen on")
	fs.StringVar(&c.RTMPAddr, "rtmp-addr", c.RTMPAddr, "address of the RTMP server that takes publishers (OBS, ffmpeg) with a room's stream key (empty: off)")
	fs.StringVar(&c.RTMPSAddr, "rtmps-addr", c.RTMPSAddr, "address of the same RTMP server over TLS (RTMPS), with the HTTPS certificate (empty: off)")
	fs.IntVar(&c.RTMPMaxChunkSize, "rtmp-max-chunk-size", c.RTMPMaxChunkSize, "largest RTMP chunk size a publisher may set (bytes)")
	fs.IntVar(&c.RTMPMaxMessageSize, "rtmp-max-message-size", c.RTMPMaxMessageSize, "largest RTMP message, a video frame, a publisher may send (bytes)")
	fs.DurationVar(&c.RTMPHandshakeTimeout, "rtmp-handshake-timeout", c.RTMPHandshakeTimeout, "time an RTMP client has from connecting to publishing")
	fs.DurationVar(&c.RTMPIdleTimeout, "rtmp-idle-timeout", c.RTMPIdleTimeout, "an RTMP publisher silent (or slower than one message) this long is dropped")
	fs.IntVar(&c.RTMPMaxConns, "rtmp-max-conns", c.RTMPMaxConns, "most RTMP connections at once")
	fs.DurationVar(&c.RTMPResumeGrace, "rtmp-resume-grace", c.RTMPResumeGrace, "an RTMP publisher that drops and comes back with its key within this goes on as the same stage (0: none)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

// EnvName returns the environment variable for a flag name.
func EnvName(flagName string) string {
	return "MATINEE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets every flag not given on the command line from its
// MATINEE_* environment variable, if present. Call it after fs.Parse.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

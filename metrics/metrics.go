// Package metrics exposes a Matinee server's state in the Prometheus text
// format. Its collector reads live counts when scraped — rooms and peers,
// and the media core's transports, producers, consumers and counters, all
// from the room manager (room.Manager.MediaStats) — so nothing on the
// media path takes a lock or touches a metric per packet.
package metrics

import (
	"net/http"
	"sort"

	"github.com/matinee-dev/matinee/room"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are what the collector reads. Rooms is required (rooms, peers
// and the media core's counts, room.Manager.MediaStats); the functions are
// optional and their metrics are left out when nil.
type Sources struct {
	Rooms *room.Manager
	// Sessions reports publishers and viewers connected through WHIP and
	// WHEP.
	Sessions func() (whip, whep int)
	// Recordings reports how many rooms are being recorded, with ok false
	// while no recorder is plugged in (the metric is then left out).
	Recordings func() (active int, ok bool)
	// RTMPRefused reports RTMP publishes refused since start, by reason
	// (nil: no RTMP server, the metric is left out).
	RTMPRefused func() map[string]uint64
	// Relay reports the relay's pipes between nodes (ok false: no relay,
	// the metrics are left out).
	Relay func() (RelayFigures, bool)
}

// RelayFigures are the relay's pipes and their counters (every pipe since
// start).
type RelayFigures struct {
	// PipesIn feed this node's edges; PipesOut go from its rooms to edges.
	PipesIn, PipesOut int
	// PacketsIn arrived on edge ends, PacketsOut left origin ends.
	PacketsIn, PacketsOut uint64
	// Retransmits were sent again by origins on an edge's NACK;
	// KeyframeRequests sent by edges to origins.
	Retransmits, KeyframeRequests uint64
	// MembersEdge are WebSocket members here of other nodes' rooms;
	// MembersOrigin members of rooms here whose sockets are on other
	// nodes (--relay-members).
	MembersEdge, MembersOrigin int
}

// estimateBuckets are bandwidth estimate buckets, in bits per second.
var estimateBuckets = []float64{150e3, 300e3, 600e3, 1e6, 2e6, 3e6, 5e6, 10e6, 20e6}

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	src Sources

	rooms, peers               *prometheus.Desc
	transports                 *prometheus.Desc
	ownSRTP, rtcpIntake        *prometheus.Desc
	producers, consumers       *prometheus.Desc
	packets, bytes             *prometheus.Desc
	nacks, keyframeReqs        *prometheus.Desc
	layerSwitches, estimates   *prometheus.Desc
	forwardTime                *prometheus.Desc
	whipSessions, whepSessions *prometheus.Desc
	recordings                 *prometheus.Desc
	rtmpRefused                *prometheus.Desc
	relayPipes, relayPackets   *prometheus.Desc
	relayMembers               *prometheus.Desc
	relayRetransmits, relayPLI *prometheus.Desc
}

// NewCollector returns a collector reading src.
func NewCollector(src Sources) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("matinee_"+name, help, labels, nil)
	}
	return &Collector{
		src:              src,
		rooms:            d("rooms", "Rooms open."),
		peers:            d("peers", "Peers in rooms (WebSocket clients and WHIP publishers)."),
		transports:       d("transports", "WebRTC and in-process transports, by direction seen from the client (send: publisher to SFU).", "direction"),
		ownSRTP:          d("transports_own_srtp", "Receive transports whose RTP the SFU encrypts and sends itself (batched) instead of through pion's SRTP and ICE layers."),
		rtcpIntake:       d("rtcp_intake_packets_total", "Subscribers' compound RTCP packets the SFU decrypted and served itself, taken off the socket ahead of pion's ICE and SRTP layers (transports on the own SRTP path)."),
		producers:        d("producers", "Incoming tracks.", "kind"),
		consumers:        d("consumers", "Tracks forwarded to one subscriber each.", "kind"),
		packets:          d("forwarded_packets_total", "RTP packets forwarded to subscribers, all consumers since start."),
		bytes:            d("forwarded_bytes_total", "RTP bytes (header and payload, before SRTP) forwarded to subscribers."),
		nacks:            d("rtcp_nacks_total", "RTCP NACK messages: received from subscribers (answered from the packet history) or sent to publishers.", "direction"),
		keyframeReqs:     d("keyframe_requests_total", "PLI and FIR messages: received from subscribers, or sent to publishers after coalescing.", "direction"),
		layerSwitches:    d("layer_switches_total", "Video consumers switching simulcast layer, including suspensions for want of bandwidth."),
		estimates:        d("subscriber_bandwidth_estimate_bps", "Bandwidth estimates of connected subscriber transports at scrape time, in bits per second."),
		forwardTime:      d("forward_seconds", "Time from a published packet being read to its last copy handed to the kernel (its fan-out to every subscriber and pipe, and the send of the batches it ended), for packets that had somewhere to go."),
		whipSessions:     d("whip_sessions", "Publishers connected through WHIP."),
		whepSessions:     d("whep_sessions", "Viewers connected through WHEP."),
		recordings:       d("recordings_active", "Rooms being recorded."),
		relayPipes:       d("relay_pipes", "Relay pipes between nodes, by direction (in: feeding an edge copy of another node's room here; out: from a room here to another node).", "direction"),
		relayMembers:     d("relay_members", "WebSocket members on several nodes, by side (edge: sockets here of members of other nodes' rooms; origin: members of rooms here whose sockets are on other nodes).", "side"),
		relayPackets:     d("relay_packets_total", "RTP packets on relay pipes, retransmissions included (in: received by edges here; out: sent to edges).", "direction"),
		relayRetransmits: d("relay_retransmits_total", "Packets sent again to edges on their NACKs, from the packet history."),
		relayPLI:         d("relay_keyframe_requests_total", "Keyframe requests edges here sent to origins, after coalescing."),
		rtmpRefused:      d("rtmp_refused_total", "RTMP publishes refused, by reason (bad_key: unknown or revoked stream key; live: the key is already publishing; video: B-frames or a codec other than H.264; room: the room could not take it).", "reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rooms, c.peers, c.transports, c.ownSRTP, c.rtcpIntake, c.producers, c.consumers, c.packets, c.bytes, c.nacks, c.keyframeReqs, c.layerSwitches, c.estimates, c.forwardTime} {
		ch <- d
	}
	if c.src.Sessions != nil {
		ch <- c.whipSessions
		ch <- c.whepSessions
	}
	if c.src.Recordings != nil {
		ch <- c.recordings
	}
	if c.src.RTMPRefused != nil {
		ch <- c.rtmpRefused
	}
	if c.src.Relay != nil {
		ch <- c.relayPipes
		ch <- c.relayPackets
		ch <- c.relayMembers
		ch <- c.relayRetransmits
		ch <- c.relayPLI
	}
}

// Collect implements prometheus.Collector: one walk of the rooms and one
// reading of the media core's counts per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	rooms := c.src.Rooms.Rooms()
	peers := 0
	for _, r := range rooms {
		peers += len(r.Peers())
	}
	gauge(c.rooms, float64(len(rooms)))
	gauge(c.peers, float64(peers))

	s := c.src.Rooms.MediaStats()
	gauge(c.transports, float64(s.SendTransports), "send")
	gauge(c.transports, float64(s.RecvTransports), "recv")
	gauge(c.ownSRTP, float64(s.OwnSRTP))
	counter(c.rtcpIntake, s.RTCPIntake)
	for _, k := range []string{"audio", "video"} {
		gauge(c.producers, float64(s.Producers[k]), k)
		gauge(c.consumers, float64(s.Consumers[k]), k)
	}
	counter(c.packets, s.ForwardedPackets)
	counter(c.bytes, s.ForwardedBytes)
	counter(c.nacks, s.NACKsIn, "received")
	counter(c.nacks, s.NACKsOut, "sent")
	counter(c.keyframeReqs, s.PLIsIn, "received")
	counter(c.keyframeReqs, s.PLIsOut, "sent")
	counter(c.layerSwitches, s.LayerSwitches)
	ch <- estimateHistogram(c.estimates, s.Estimates)
	ch <- forwardHistogram(c.forwardTime, s.Forward)

	if c.src.Sessions != nil {
		whip, whep := c.src.Sessions()
		gauge(c.whipSessions, float64(whip))
		gauge(c.whepSessions, float64(whep))
	}
	if c.src.Recordings != nil {
		if n, ok := c.src.Recordings(); ok {
			gauge(c.recordings, float64(n))
		}
	}
	if c.src.RTMPRefused != nil {
		for reason, n := range c.src.RTMPRefused() {
			counter(c.rtmpRefused, n, reason)
		}
	}
	if c.src.Relay != nil {
		if f, ok := c.src.Relay(); ok {
			gauge(c.relayPipes, float64(f.PipesIn), "in")
			gauge(c.relayPipes, float64(f.PipesOut), "out")
			counter(c.relayPackets, f.PacketsIn, "in")
			counter(c.relayPackets, f.PacketsOut, "out")
			counter(c.relayRetransmits, f.Retransmits)
			counter(c.relayPLI, f.KeyframeRequests)
			gauge(c.relayMembers, float64(f.MembersEdge), "edge")
			gauge(c.relayMembers, float64(f.MembersOrigin), "origin")
		}
	}
}

// forwardHistogram renders the forwarding times, counted since start.
func forwardHistogram(d *prometheus.Desc, f room.ForwardTimes) prometheus.Metric {
	buckets := make(map[float64]uint64, len(f.Bounds))
	var n uint64
	for i, b := range f.Bounds {
		if i < len(f.Counts) {
			n += f.Counts[i]
		}
		buckets[b] = n
	}
	for _, c := range f.Counts[min(len(f.Bounds), len(f.Counts)):] {
		n += c
	}
	return prometheus.MustNewConstHistogram(d, n, f.Sum.Seconds(), buckets)
}

// estimateHistogram renders the current estimates as a histogram: a
// distribution over subscribers at one instant, not over time.
func estimateHistogram(d *prometheus.Desc, est []int) prometheus.Metric {
	sort.Ints(est)
	buckets := make(map[float64]uint64, len(estimateBuckets))
	sum := 0.0
	i := 0
	for _, b := range estimateBuckets {
		for i < len(est) && float64(est[i]) <= b {
			i++
		}
		buckets[b] = uint64(i)
	}
	for _, e := range est {
		sum += float64(e)
	}
	return prometheus.MustNewConstHistogram(d, uint64(len(est)), sum, buckets)
}

// Handler serves /metrics from a registry of its own: the collector, plus
// the Go runtime's and the process's (CPU, memory, file descriptors).
func Handler(src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

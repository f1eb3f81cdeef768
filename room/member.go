package room

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu"
)

// JoinOptions are what a client gives when joining.
type JoinOptions struct {
	Name     string
	Password string
	Token    string
	// Client is the connection's state kept across its joins (rate
	// limits, wrong passwords); nil: a fresh one (in-process callers).
	Client *Client
	// Admin is set by callers that authenticated with the API key (e.g.
	// a WHIP publisher): no password is asked and a lock does not apply.
	Admin bool
	// Resume is the resume token of an earlier join (JoinResult's
	// ResumeToken): the same person coming back within the grace period
	// takes its member over again. An unknown one is no error: the join
	// goes on as a new member.
	Resume string
}

// JoinResult is what a joining client learns about the room.
type JoinResult struct {
	PeerID     string         `json:"peerId"`
	Room       string         `json:"room"`
	Role       string         `json:"role"`
	Peers      []PeerInfo     `json:"peers"`
	Producers  []ProducerInfo `json:"producers"`
	ICEServers []any          `json:"iceServers"`

	// Identity is the token's identity, or the peer id.
	Identity string `json:"identity"`
	// RoomInfo is the room's name and options.
	RoomInfo RoomInfo `json:"roomInfo"`
	// Chat is the recent history, oldest first.
	Chat []ChatMessage `json:"chat"`
	// Playback is the room's playback state.
	Playback PlaybackState `json:"playback"`
	// Queue are the videos to play next, next first.
	Queue []QueueItem `json:"queue"`
	// Sync are the drift-correction thresholds every client uses.
	Sync SyncParams `json:"sync"`
	// ServerTime is the server clock when the join was handled (Unix ms),
	// a first rough clock sample; refine it with the time method.
	ServerTime float64 `json:"serverTime"`
	// ResumeToken proves who this member is: a join that gives it back
	// (a reload, a reconnect) within the grace period is the same member.
	ResumeToken string `json:"resumeToken"`
	// Resumed is true when the join took an earlier member over: same
	// peer id, role and name.
	Resumed bool `json:"resumed"`
	// GraceMs is how long a dropped connection keeps the member (ms).
	GraceMs int64 `json:"graceMs"`
	// Nodes are the base URLs of the cluster's other serving nodes
	// (cluster mode only): where a client whose node stops answering
	// joins again.
	Nodes []string `json:"nodes,omitempty"`
}

// Member is one person in a room. It outlives its connection for the
// grace period: the same person coming back (resume token or token
// identity) takes it over, with its role, name and state.
type Member struct {
	id     string
	name   string
	room   *Room
	resume string // the resume token, a secret ("" for a member restored from a cluster's state until it resumes)
	// resumeSum is the token's SHA-256, which resuming compares (and a
	// cluster's state keeps instead of the token).
	resumeSum [sha256.Size]byte

	mu     sync.Mutex
	n      Notifier // the current connection; under mu
	role   string
	away   bool  // its connection dropped; back within the grace period or gone
	awayT  Timer // ends the grace period
	awayN  int   // counts drops, so a stale grace timer does nothing
	send   *sfu.SendTransport
	recv   *sfu.RecvTransport
	gone   bool
	reason string

	identity string // token identity; "" means the peer id
	joinedAt time.Time
	// playback presence
	buffering bool
	bufPos    *float64 // position reported when buffering began
	stalled   bool     // buffered past the wait timeout: not waited for
	report    *SyncReport
	// cl is the connection's rate-limit state; person keys the chat
	// budget shared by the person's connections ("" for none).
	cl     *Client
	person string
}

// Players report about once a second, and at once when they start or stop
// buffering; this is far above that and stops a flood.
const (
	reportRate  = 20
	reportBurst = 40
)

// withIdentityLocked finds the member a token identity belongs to; r.mu
// is held.
func (r *Room) withIdentityLocked(identity string) *Member {
	for _, mb := range r.members {
		mb.mu.Lock()
		same := mb.identity == identity
		mb.mu.Unlock()
		if same {
			return mb
		}
	}
	return nil
}

// Join puts a new member in room id (creating it when open rooms are on).
func (m *Manager) Join(id string, o JoinOptions, n Notifier) (*Member, *JoinResult, error) {
	var claims *TokenClaims
	if o.Token != "" {
		c, err := m.VerifyToken(id, o.Token)
		if err != nil {
			return nil, nil, err
		}
		claims = c
	}
	name := o.Name
	if claims != nil && claims.Name != "" {
		name = claims.Name
	}
	name, err := checkName("name", name)
	if err != nil {
		return nil, nil, err
	}
	_, wasHere := m.Room(id)
	if err := m.claim(id, false); err != nil {
		return nil, nil, err
	}
	// A room coming to this node (its node died or drained) carries on
	// with its party's state, if the cluster kept one.
	var state []byte
	if !wasHere && m.cfg.Cluster.LoadState != nil {
		if state, err = m.cfg.Cluster.LoadState(id); err != nil {
			return nil, nil, err
		}
	}
	cl := o.Client
	if cl == nil {
		cl = NewClient("")
	}
	cl.init(m)
	// A room opened by link closes with its last member; a join that
	// found it just before it closed opens it again.
	for attempt := 1; ; attempt++ {
		mb, res, err := m.enter(id, o, n, claims, name, cl, state)
		if err == nil {
			mb.room.tellStage(n)
		}
		if !errors.Is(err, errLinkRoomClosed) {
			return mb, res, err
		}
		if attempt == 3 {
			return nil, nil, errorf(KindNotFound, "room %q has ended", id)
		}
	}
}

// errLinkRoomClosed: the room opened by link that a join found has closed
// since; opening it again makes a new one.
var errLinkRoomClosed = errors.New("room closed meanwhile")

// enter is Join once the token and name are checked.
func (m *Manager) enter(id string, o JoinOptions, n Notifier, claims *TokenClaims, name string, cl *Client, state []byte) (*Member, *JoinResult, error) {
	r, err := m.open(id)
	if err != nil {
		return nil, nil, err
	}
	if state != nil {
		if err := r.restoreState(state); err != nil {
			r.log.Warn("room state not taken over", "err", err)
		}
	}
	if mb, res, err := m.tryResume(r, o, n, claims, cl); mb != nil || err != nil {
		return mb, res, err
	}
	mb := &Member{id: newPeerID(), name: name, room: r, n: n, role: RoleGuest, joinedAt: m.now(), cl: cl, resume: randHex(16)}
	mb.resumeSum = resumeSum(mb.resume)
	if cl.addr != "" {
		mb.person = "ip:" + cl.addr
	}
	if claims != nil {
		mb.identity = claims.Identity
		mb.role = claims.Role
		mb.person = "id:" + claims.Identity
	}
	checked, err := m.checkPassword(r, claims, o, cl)
	if err != nil {
		return nil, nil, err
	}
	r.evMu.Lock()
	r.mu.Lock()
	if o.Admin {
		checked = r.password
	}
	if err := r.admit(claims, o.Password, checked, o.Admin); err != nil {
		if r.closed && !r.persistent {
			err = errLinkRoomClosed
		}
		r.mu.Unlock()
		r.evMu.Unlock()
		return nil, nil, err
	}
	if len(r.members) == 0 && claims == nil {
		mb.role = RoleHost
	}
	first := !r.started
	r.started = true
	peers := make([]PeerInfo, 0, len(r.order))
	for _, pid := range r.order {
		peers = append(peers, r.members[pid].info())
	}
	r.members[mb.id] = mb
	r.order = append(r.order, mb.id)
	info := r.infoLocked()
	r.mu.Unlock()
	res := m.joinResult(r, mb, peers, info)
	r.broadcast(mb.id, "peerJoined", map[string]any{"peer": mb.info()})
	r.evMu.Unlock()
	res.Producers = r.Producers()
	r.log.Info("peer joined", "peer", mb.id, "identity", mb.Identity(), "name", name, "role", mb.Role())
	if first {
		m.hooks.send("room.started", map[string]any{"room": info})
	}
	m.hooks.send("participant.joined", map[string]any{"room": info, "participant": mb.info()})
	return mb, res, nil
}

// joinResult is what a member learns when it joins or resumes; evMu is
// held.
func (m *Manager) joinResult(r *Room, mb *Member, peers []PeerInfo, info RoomInfo) *JoinResult {
	return &JoinResult{
		PeerID: mb.id, Room: r.id, Role: mb.Role(), Peers: peers, ICEServers: m.iceServers(mb.id),
		Identity: mb.Identity(), RoomInfo: info,
		Chat:        r.chat.list(),
		Playback:    r.playbackLocked(),
		Queue:       r.queue.list(),
		Sync:        m.syncParams(),
		ServerTime:  serverMillis(m.now()),
		ResumeToken: mb.resume,
		GraceMs:     m.cfg.Grace.Milliseconds(),
		Nodes:       m.otherNodes(),
	}
}

// checkPassword hashes the given password when the room has one and
// the join needs it, within the limits on wrong passwords, and returns
// the hash it matched (nil: none). The hash is slow on purpose: it runs
// before the room's locks are taken, and admit only makes sure it did
// not change meanwhile.
func (m *Manager) checkPassword(r *Room, claims *TokenClaims, o JoinOptions, cl *Client) (*passwordHash, error) {
	if claims != nil || o.Admin || o.Password == "" {
		return nil, nil
	}
	r.mu.Lock()
	pw := r.password
	r.mu.Unlock()
	if pw == nil {
		return nil, nil
	}
	done, err := m.guard.reserve(cl, r.id, m.now())
	if err != nil {
		r.log.Debug("password attempt refused", "addr", cl.addr, "err", err)
		return nil, err
	}
	ok := pw.matches(o.Password)
	done(ok)
	if !ok {
		return nil, nil
	}
	return pw, nil
}

// admit checks that a new member may come in; checked is the password
// hash the given password matched, if any. r.mu is held.
func (r *Room) admit(claims *TokenClaims, password string, checked *passwordHash, admin bool) error {
	present := len(r.members)
	switch {
	case r.closed:
		return errorf(KindNotFound, "room %q has ended", r.id)
	case r.settings.Locked && !admin:
		return forbidden(ReasonLocked, "room %q is locked", r.id)
	case present >= r.maxPeers:
		return errorf(KindRoomFull, "room %q is full (%d peers)", r.id, r.maxPeers)
	case claims == nil && r.password != nil && password == "" && checked == nil:
		return forbidden(ReasonPasswordRequired, "room %q needs a password", r.id)
	case claims == nil && r.password != nil && r.password != checked:
		return forbidden(ReasonWrongPassword, "wrong password for room %q", r.id)
	}
	return nil
}

func newPeerID() string { return "pe-" + randHex(6) }

// ID returns the member's peer id.
func (mb *Member) ID() string { return mb.id }

// Identity returns the member's token identity, or its peer id when it
// joined without a token.
func (mb *Member) Identity() string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.identity == "" {
		return mb.id
	}
	return mb.identity
}

// Name returns the member's display name.
func (mb *Member) Name() string { return mb.name }

// Room returns the member's room.
func (mb *Member) Room() *Room { return mb.room }

func (mb *Member) info() PeerInfo {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	ident := mb.identity
	if ident == "" {
		ident = mb.id
	}
	return PeerInfo{ID: mb.id, Identity: ident, Name: mb.name, Role: mb.role, Buffering: mb.buffering && !mb.gone, Away: mb.away}
}

// Leave removes the member for good (the person said so): its media
// closes, the others are told, a host hands over at once.
func (mb *Member) Leave() { mb.remove("") }

// Why a member left, in peerLeft.
const (
	leftLeave   = "left"    // said so
	leftTimeout = "timeout" // its connection dropped and it did not come back
	leftRemoved = "removed" // kicked, or the room ended
)

// remove takes the member out of its room; a non-empty reason is sent to
// its client before the connection ends.
func (mb *Member) remove(reason string) {
	why := leftLeave
	if reason != "" {
		why = leftRemoved
	}
	mb.removeAs(why, reason)
}

func (mb *Member) removeAs(why, reason string) {
	mb.mu.Lock()
	if mb.gone {
		mb.mu.Unlock()
		return
	}
	mb.gone = true
	mb.away = false
	if mb.awayT != nil {
		mb.awayT.Stop()
	}
	send, recv := mb.send, mb.recv
	wasHost := mb.role == RoleHost
	wasBuffering := mb.buffering
	n := mb.n
	mb.mu.Unlock()
	r := mb.room
	if recv != nil {
		recv.Close()
	}
	if send != nil {
		send.Close() // closes producers: others get producerClosed
	}
	r.evMu.Lock()
	r.mu.Lock()
	delete(r.members, mb.id)
	for i, id := range r.order {
		if id == mb.id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	var newHost *Member
	if wasHost && !r.closed && !r.hasHostLocked() {
		newHost = r.successorLocked()
	}
	empty := len(r.members) == 0
	last := empty && r.started
	if last {
		r.started = false
	}
	info := r.infoLocked()
	r.mu.Unlock()
	r.log.Info("peer left", "peer", mb.id, "why", why, "reason", reason)
	left := map[string]any{"peerId": mb.id, "name": mb.name, "role": mb.Role(), "reason": why}
	if newHost != nil {
		newHost.setRole(RoleHost)
		left["newHost"] = newHost.id
		r.log.Info("host handed over", "from", mb.id, "to", newHost.id, "why", why)
	}
	r.broadcast(mb.id, "peerLeft", left)
	if newHost != nil {
		r.broadcast("", "peerUpdated", map[string]any{"peer": newHost.info()})
	}
	if empty || r.nobodyHere() {
		r.pauseEmptyLocked()
	} else if wasBuffering {
		r.evaluateWaitLocked()
	}
	r.evMu.Unlock()
	if reason != "" {
		n.Notify("disconnected", map[string]any{"reason": reason})
		n.Disconnect(reason)
	}
	r.m.hooks.send("participant.left", map[string]any{"room": info, "participant": mb.info(), "reason": reason})
	if last {
		r.m.hooks.send("room.finished", map[string]any{"room": info})
	}
	r.m.closeIfEmpty(r)
}

// notifier is the member's current connection.
func (mb *Member) notifier() Notifier {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.n
}

// hasHostLocked reports whether a member is host; r.mu is held.
func (r *Room) hasHostLocked() bool {
	for _, mb := range r.members {
		if mb.Role() == RoleHost {
			return true
		}
	}
	return false
}

// successorLocked picks who becomes host when the last host leaves: the
// guest who joined first. Viewers are not promoted. r.mu is held.
func (r *Room) successorLocked() *Member {
	// A guest who is here beats one whose connection dropped.
	var away *Member
	for _, id := range r.order {
		mb := r.members[id]
		if mb == nil || mb.Role() != RoleGuest {
			continue
		}
		if !mb.isAway() {
			return mb
		}
		if away == nil {
			away = mb
		}
	}
	return away
}

func (mb *Member) check() error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.gone || mb.away {
		return errorf(KindNotJoined, "not in a room")
	}
	return nil
}

// CreateTransport makes the member's send or receive transport.
func (mb *Member) CreateTransport(direction string) (string, error) {
	var dir sfu.Direction
	switch direction {
	case "send":
		dir = sfu.Send
	case "recv":
		dir = sfu.Recv
	default:
		return "", errorf(KindInvalidField, `"direction" must be "send" or "recv"`)
	}
	if err := mb.check(); err != nil {
		return "", err
	}
	mb.mu.Lock()
	if (dir == sfu.Send && mb.send != nil) || (dir == sfu.Recv && mb.recv != nil) {
		mb.mu.Unlock()
		return "", errorf(KindInvalidState, "a %s transport exists already", direction)
	}
	n := mb.n // the transport belongs to this connection
	mb.mu.Unlock()
	// The callbacks name the transport by id, known once it is made.
	var id string
	// The member waits for the client to resume through the grace
	// period after a failure.
	opts := transportOptions(mb.id, n, &id, func() { go mb.Drop(n) })
	var t *sfu.WebRTCTransport
	var send *sfu.SendTransport
	var recv *sfu.RecvTransport
	var err error
	if dir == sfu.Send {
		if send, err = mb.room.router.NewSendTransport(opts); err == nil {
			t = send.WebRTCTransport
		}
	} else {
		if recv, err = mb.room.router.NewRecvTransport(opts); err == nil {
			t = recv.WebRTCTransport
		}
	}
	if err != nil {
		return "", fromSFU(err)
	}
	id = t.ID()
	mb.mu.Lock()
	if mb.gone || mb.n != n {
		mb.mu.Unlock()
		t.Close()
		return "", errorf(KindNotJoined, "not in a room")
	}
	if send != nil {
		mb.send = send
	} else {
		mb.recv = recv
	}
	mb.mu.Unlock()
	return id, nil
}

func (mb *Member) transport(id string) (*sfu.SendTransport, *sfu.RecvTransport, error) {
	if err := mb.check(); err != nil {
		return nil, nil, err
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.send != nil && mb.send.ID() == id {
		return mb.send, nil, nil
	}
	if mb.recv != nil && mb.recv.ID() == id {
		return nil, mb.recv, nil
	}
	return nil, nil, errorf(KindNotFound, "unknown transport %q", id)
}

// TrackParams is the appData of one published m-section.
type TrackParams struct {
	Mid     string
	AppData any
}

// Publish applies an offer to the member's send transport.
func (mb *Member) Publish(transportID, offer string, tracks []TrackParams) (string, []ProducerInfo, error) {
	t, _, err := mb.transport(transportID)
	if err != nil {
		return "", nil, err
	}
	if err := mb.mayShare(); err != nil {
		return "", nil, err
	}
	if t == nil {
		return "", nil, fromSFU(fmt.Errorf("publish on a recv transport: %w", sfu.ErrInvalidState))
	}
	ti := map[string]sfu.TrackInfo{}
	for _, tp := range tracks {
		ti[tp.Mid] = sfu.TrackInfo{AppData: tp.AppData}
	}
	answer, added, err := t.Publish(offer, ti)
	if err != nil {
		return "", nil, fromSFU(err)
	}
	infos := make([]ProducerInfo, 0, len(added))
	for _, p := range added {
		p := p
		info := producerInfo(p)
		infos = append(infos, info)
		p.OnClose(func() {
			mb.room.broadcast("", "producerClosed", map[string]any{"producerId": p.ID()})
		})
		mb.watchLayers(p)
		mb.room.broadcast(mb.id, "producerAdded", map[string]any{"producer": info})
	}
	return answer, infos, nil
}

// Role returns the member's role.
func (mb *Member) Role() string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.role
}

// ownProducer finds one of the member's producers.
func (mb *Member) ownProducer(id string) (*sfu.Producer, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	p, err := mb.room.router.Producer(id)
	if err != nil || p.Owner() != mb.id {
		return nil, errorf(KindNotFound, "unknown producer %q", id)
	}
	return p, nil
}

// CloseProducer closes one of the member's producers.
func (mb *Member) CloseProducer(id string) error {
	p, err := mb.ownProducer(id)
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

// PauseProducer mutes (pause=true) or unmutes one of the member's producers.
func (mb *Member) PauseProducer(id string, pause bool) error {
	p, err := mb.ownProducer(id)
	if err != nil {
		return err
	}
	if pause {
		p.Pause()
		mb.room.broadcast("", "producerPaused", map[string]any{"producerId": id})
	} else {
		p.Resume()
		mb.room.broadcast("", "producerResumed", map[string]any{"producerId": id})
	}
	return nil
}

// Subscribe forwards a producer to the member's receive transport.
func (mb *Member) Subscribe(producerID string) (ConsumerInfo, error) {
	if err := mb.check(); err != nil {
		return ConsumerInfo{}, err
	}
	p, err := mb.room.router.Producer(producerID)
	if err != nil {
		return ConsumerInfo{}, errorf(KindNotFound, "unknown producer %q", producerID)
	}
	if p.Owner() == mb.id {
		return ConsumerInfo{}, errorf(KindInvalidState, "cannot subscribe to your own producer %q", producerID)
	}
	mb.mu.Lock()
	recv := mb.recv
	mb.mu.Unlock()
	if recv == nil {
		return ConsumerInfo{}, errorf(KindInvalidState, "create a recv transport first")
	}
	c, err := recv.Consume(p, false)
	if err != nil {
		return ConsumerInfo{}, fromSFU(err)
	}
	// The consumer belongs to this connection's receive transport: what
	// it says goes to this connection, not to one that resumed later.
	n := mb.notifier()
	c.OnClose(func() {
		mb.mu.Lock()
		gone := mb.gone
		mb.mu.Unlock()
		if !gone {
			n.Notify("consumerClosed", map[string]any{"consumerId": c.ID(), "producerId": producerID})
		}
	})
	c.OnLayerChange(func(spatial, temporal int) {
		n.Notify("layerChanged", map[string]any{"consumerId": c.ID(), "spatialLayer": spatial, "temporalLayer": temporal})
	})
	return consumerInfo(c), nil
}

func (mb *Member) consumer(id string) (*sfu.Consumer, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	mb.mu.Lock()
	recv := mb.recv
	mb.mu.Unlock()
	return findConsumer(recv, id)
}

// Unsubscribe closes one of the member's consumers.
func (mb *Member) Unsubscribe(id string) error {
	return unsubscribe(mb, id)
}

// PauseConsumer pauses (pause=true) or resumes one of the member's consumers.
func (mb *Member) PauseConsumer(id string, pause bool) error {
	return pauseConsumer(mb, id, pause)
}

// TransportAnswer applies the client's answer on its receive transport.
func (mb *Member) TransportAnswer(transportID, answer string) error {
	return transportAnswer(mb, transportID, answer)
}

// RestartICE restarts ICE on the member's receive transport.
func (mb *Member) RestartICE(transportID string) error {
	return restartICE(mb, transportID)
}

// AddICECandidate trickles a client candidate into a transport.
func (mb *Member) AddICECandidate(transportID string, c *ICECandidate) error {
	return addICECandidate(mb, transportID, c)
}

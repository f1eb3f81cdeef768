package room

// iceServers returns the iceServers of a joining peer's join result: never
// nil, so clients always see a list.
func (m *Manager) iceServers(peerID string) []any {
	if m.cfg.ICEServers == nil {
		return []any{}
	}
	if s := m.cfg.ICEServers(peerID); s != nil {
		return s
	}
	return []any{}
}

package sfu

// IsClosed reports whether the router has been closed (its room ended).
func (r *Router) IsClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

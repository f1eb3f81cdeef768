package room

import (
	"math"
	"time"
)

// bucket is a token bucket: rate tokens per second, at most burst saved
// up. The zero value with rate 0 allows everything. Not safe for
// concurrent use; its owner locks.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// refill adds what has dripped in since the last call.
func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
}

// wait reports how long until one token is there (0: now).
func (b *bucket) wait(now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// take spends one token at now. When none is left it reports how long
// until one will be.
func (b *bucket) take(now time.Time) (ok bool, wait time.Duration) {
	if w := b.wait(now); w > 0 {
		return false, w
	}
	if b.rate > 0 {
		b.tokens--
	}
	return true, 0
}

// give returns a token taken for something that did not happen.
func (b *bucket) give() {
	if b.rate > 0 {
		b.tokens = math.Min(b.burst, b.tokens+1)
	}
}

// full reports whether the bucket has refilled completely by now, so
// forgetting it changes nothing.
func (b *bucket) full(now time.Time) bool {
	return b.rate <= 0 || b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst
}

// bucketMap keeps one bucket per key (a person, an address, a room) and
// forgets those that have refilled, so it stays as small as the set of
// keys that were busy recently. Not safe for concurrent use.
type bucketMap struct {
	rate      float64
	burst     int
	m         map[string]*bucket
	lastSweep time.Time
}

func newBucketMap(rate float64, burst int) *bucketMap {
	return &bucketMap{rate: rate, burst: burst, m: map[string]*bucket{}}
}

// get returns key's bucket, making a full one when there is none.
func (bm *bucketMap) get(key string, now time.Time) *bucket {
	bm.sweep(now)
	b := bm.m[key]
	if b == nil {
		nb := newBucket(bm.rate, bm.burst)
		b = &nb
		bm.m[key] = b
	}
	return b
}

// sweep drops full buckets, at most once per refill time, so its cost
// per call stays constant on average.
func (bm *bucketMap) sweep(now time.Time) {
	if bm.rate <= 0 {
		return
	}
	every := time.Duration(float64(bm.burst) / bm.rate * float64(time.Second))
	if now.Sub(bm.lastSweep) < every {
		return
	}
	bm.lastSweep = now
	for k, b := range bm.m {
		if b.full(now) {
			delete(bm.m, k)
		}
	}
}

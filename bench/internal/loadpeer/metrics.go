package loadpeer

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Scrape reads a server's /metrics (base is its URL; hc nil is a plain
// client with a 1 s timeout; key, when not empty, is sent as a bearer
// token): every sample by its name with labels as written
// (`matinee_forward_seconds_bucket{le="0.001"}`).
func Scrape(hc *http.Client, base, key string) (map[string]float64, error) {
	if hc == nil {
		hc = &http.Client{Timeout: time.Second}
	}
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m, sc.Err()
}

// ForwardQuantile is the bucket bound, in ms, under which the fraction q
// of the packets forwarded between two scrapes took from being read to
// their last copy sent (matinee_forward_seconds): the SFU's own share of
// the delay, at the histogram's resolution. -1 when nothing was counted.
func ForwardQuantile(before, after map[string]float64, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range after {
		le, ok := strings.CutPrefix(k, `matinee_forward_seconds_bucket{le="`)
		if !ok {
			continue
		}
		b, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{b, v - before[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return -1
	}
	total := bs[len(bs)-1].n // le="+Inf": every packet
	for _, b := range bs {
		if b.n >= q*total {
			return 1000 * b.le
		}
	}
	return -1
}

// PinSelf pins every thread of this process to cpu (cpu < 0: to every
// CPU again); threads made later inherit it from the thread that makes
// them.
func PinSelf(cpu int) error {
	var set unix.CPUSet
	if cpu >= 0 {
		set.Set(cpu)
	} else {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	return nil
}

// Median is the middle of v (the mean of the two middle values for an
// even count), 0 for none; v is left as it was.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

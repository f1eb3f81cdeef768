package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestEstimateHistogram(t *testing.T) {
	d := prometheus.NewDesc("x", "x", nil, nil)
	m := estimateHistogram(d, []int{2_500_000, 100_000, 800_000, 50_000_000})
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	h := out.GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 53_400_000 {
		t.Fatalf("count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[float64]uint64{150e3: 1, 600e3: 1, 1e6: 2, 2e6: 2, 3e6: 3, 20e6: 3}
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket ≤%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
}

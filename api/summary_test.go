package api

import (
	"strings"
	"testing"
)

func TestParseNodeSummary(t *testing.T) {
	if AnnotationNodeSummary != "tether.io/node-summary" {
		t.Errorf("annotation %q", AnnotationNodeSummary)
	}
	good := `{"at":"2026-12-02T05:00:00Z","resources":["cpu","memory","pods"],"classes":[{"nodes":2,"free":[[2000,1024,10]]}]}`
	s, err := ParseNodeSummary(good)
	if err != nil || len(s.Classes) != 1 || s.Classes[0].Nodes != 2 || !s.Classes[0].Fits([]int64{2000, 1024, 1}) {
		t.Fatalf("%+v, %v", s, err)
	}
	for v, want := range map[string]string{
		`{"at":"2026-12-02T05:00:00Z","resources":["cpu"],"classes":[{"nodes":1,"free":[[1,2]]}]}`: "a free vector of 2 values for 1 resources",
		`{"resources":[],"classes":[],"extra":1}`:                                                  "unknown field",
		`not json`: AnnotationNodeSummary,
	} {
		if _, err := ParseNodeSummary(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNodeSummary(%s) = %v, want an error with %q", v, err, want)
		}
	}
}

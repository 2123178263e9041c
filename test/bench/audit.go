package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// auditPolicy logs every request's metadata once it is answered (watches also when they start).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// auditEvent is the part of an audit.k8s.io/v1 Event the bench reads.
type auditEvent struct {
	AuditID                  string    `json:"auditID"`
	Verb                     string    `json:"verb"`
	UserAgent                string    `json:"userAgent"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	ObjectRef                *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestURI string `json:"requestURI"`
}

// auditKey is what requests are counted by.
type auditKey struct {
	Component string `json:"component"`
	Verb      string `json:"verb"`
	Resource  string `json:"resource"`
}

// countAudit counts the requests an audit log holds that were received in [from, to), once each (a watch logs
// two stages), by component (the user agent's program name), verb and resource[/subresource].
func countAudit(r io.Reader, from, to time.Time) (map[auditKey]int, error) {
	out := map[auditKey]int{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit line %.200q: %w", sc.Text(), err)
		}
		if seen[e.AuditID] || e.RequestReceivedTimestamp.Before(from) || !e.RequestReceivedTimestamp.Before(to) {
			continue
		}
		seen[e.AuditID] = true
		k := auditKey{Component: component(e.UserAgent), Verb: e.Verb}
		switch {
		case e.ObjectRef != nil && e.ObjectRef.Subresource != "":
			k.Resource = e.ObjectRef.Resource + "/" + e.ObjectRef.Subresource
		case e.ObjectRef != nil:
			k.Resource = e.ObjectRef.Resource
		default:
			k.Resource, _, _ = strings.Cut(e.RequestURI, "?")
		}
		out[k]++
	}
	return out, sc.Err()
}

func countAuditFile(path string, from, to time.Time) (map[auditKey]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return countAudit(f, from, to)
}

// component is the program of a user agent: "kube-scheduler/v1.36.3 (linux/amd64) kubernetes/abc/scheduler" →
// kube-scheduler.
func component(userAgent string) string {
	name, _, _ := strings.Cut(userAgent, "/")
	if name = strings.TrimSpace(name); name == "" {
		return "unknown"
	}
	return name
}

// Components in the accounting.
const (
	tetherComponent = "tether-node"
	benchComponent  = "tether-bench"
)

// apiCount is one line of the accounting: requests per pod of one component, verb and resource in one cluster.
type apiCount struct {
	Cluster   string  `json:"cluster"`
	Component string  `json:"component"`
	Verb      string  `json:"verb"`
	Resource  string  `json:"resource"`
	Count     int     `json:"count"`
	PerPod    float64 `json:"perPod"`
}

// perPod turns the counts of several clusters into sorted lines, per pod of n.
func perPod(byCluster map[string]map[auditKey]int, n int) []apiCount {
	var out []apiCount
	for cluster, counts := range byCluster {
		for k, c := range counts {
			out = append(out, apiCount{Cluster: cluster, Component: k.Component, Verb: k.Verb, Resource: k.Resource,
				Count: c, PerPod: float64(c) / float64(n)})
		}
	}
	slices.SortFunc(out, func(a, b apiCount) int {
		return strings.Compare(a.Cluster+"\x00"+a.Component+"\x00"+a.Verb+"\x00"+a.Resource,
			b.Cluster+"\x00"+b.Component+"\x00"+b.Verb+"\x00"+b.Resource)
	})
	return out
}

// apiTotals sums lines per pod: Tether's own writes and reads, the load generator's, and the rest's.
type apiTotals struct {
	TetherWrites     float64 `json:"tetherWrites"`
	TetherReads      float64 `json:"tetherReads"`
	TetherLists      int     `json:"tetherLists"`
	LoadWrites       float64 `json:"loadWrites"`
	RestWrites       float64 `json:"restWrites"`
	RestReads        float64 `json:"restReads"`
	MemberPodCreates float64 `json:"memberPodCreates"`
	HostStatusWrites float64 `json:"hostStatusWrites"`
}

// totals sums lines in cluster for which pick is true.
func totals(lines []apiCount, pick func(cluster string) bool) apiTotals {
	var t apiTotals
	for _, l := range lines {
		if !pick(l.Cluster) {
			continue
		}
		write := isWrite(l.Verb)
		switch {
		case l.Component == tetherComponent && write:
			t.TetherWrites += l.PerPod
		case l.Component == tetherComponent:
			t.TetherReads += l.PerPod
			if l.Verb == "list" {
				t.TetherLists += l.Count
			}
		case l.Component == benchComponent:
			if write {
				t.LoadWrites += l.PerPod
			}
		case write:
			t.RestWrites += l.PerPod
		default:
			t.RestReads += l.PerPod
		}
		if l.Component == tetherComponent && l.Cluster != "host" && l.Verb == "create" && l.Resource == "pods" {
			t.MemberPodCreates += l.PerPod
		}
		if l.Component == tetherComponent && l.Cluster == "host" && (l.Verb == "update" || l.Verb == "patch") && l.Resource == "pods/status" {
			t.HostStatusWrites += l.PerPod
		}
	}
	return t
}

package app

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	o := NewOptions()
	o.Members = []string{"m1=/k/m1", "bad", "m1=/k/again"}
	o.Members = append(o.Members, "m2=/k/m2", "m6=/k/m6")
	o.MemberPorts = []string{"m2=10251", "m3=0", "m4", "m5=http", "m6=10251", "m7=10257"}
	o.RotateServing, o.TLSCertFile, o.TLSKeyFile = true, "/c", "/k"
	o.KubeletAddress = "nowhere"
	o.KeepLabelKeys = []string{"not a key"}
	o.DeniedNamespaces = append(o.DeniedNamespaces, "Kube_System")
	o.Members = append(o.Members, strings.Repeat("m", 60)+"=/k/long")
	o.MetricsAddress, o.DebugAddress = "10256", "127.0.0.1:99999"
	o.LeaderElection = LeaderElection{Enabled: true, ResourceName: "Not_A_Name", LeaseDuration: 5 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 5 * time.Second}
	_, err := o.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`--member "bad"`, "given twice", `--member-kubelet-port "m3=0"`, `--member-kubelet-port "m4"`,
		`--member-kubelet-port "m5=http"`, "m6=10251: port already given to m2", "m7=10257: no --member m7", "--rotate-server-certificates and --tls-cert-file", `--kubelet-address "nowhere"`, `--keep-label-keys "not a key"`, "longer than 63", `--denied-namespaces "Kube_System"`,
		`--metrics-address "10256": want host:port`, `--debug-address "127.0.0.1:99999"`, `--leader-elect-resource-name "Not_A_Name"`,
		"--leader-elect-renew-deadline 6s: must be shorter than --leader-elect-lease-duration 5s",
		"--leader-elect-retry-period 5s: 1.2 times it (6s) must be shorter than --leader-elect-renew-deadline 6s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func TestDefaultsAreValid(t *testing.T) {
	o := NewOptions()
	o.Members = []string{"m1=/k/m1"}
	if _, err := o.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	o.LeaderElection.Enabled = true
	if _, err := o.Validate(); err != nil {
		t.Errorf("defaults with --leader-elect: %v", err)
	}
}

func TestValidateLeaderElection(t *testing.T) {
	for _, tc := range []struct {
		name string
		le   func(*LeaderElection)
		want []string // nil: valid
	}{
		{"off ignores the rest", func(le *LeaderElection) { le.Enabled = false; le.LeaseDuration = 0 }, nil},
		{"defaults", func(*LeaderElection) {}, nil},
		{"every duration non-positive", func(le *LeaderElection) { le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 0, -time.Second, 0 },
			[]string{"--leader-elect-lease-duration 0s: must be positive", "--leader-elect-renew-deadline -1s: must be positive", "--leader-elect-retry-period 0s: must be positive"}},
		{"renew not shorter than the lease", func(le *LeaderElection) { le.RenewDeadline = le.LeaseDuration },
			[]string{"--leader-elect-renew-deadline 10s: must be shorter than --leader-elect-lease-duration 10s"}},
		{"retry too close to renew", func(le *LeaderElection) { le.RetryPeriod = 6 * time.Second },
			[]string{"--leader-elect-retry-period 6s: 1.2 times it (7.2s) must be shorter than --leader-elect-renew-deadline 7s"}},
		{"both orders wrong at once", func(le *LeaderElection) {
			le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = time.Second, 2*time.Second, 3*time.Second
		},
			[]string{"must be shorter than --leader-elect-lease-duration 1s", "must be shorter than --leader-elect-renew-deadline 2s"}},
		{"no lease name", func(le *LeaderElection) { le.ResourceName = "" }, []string{`--leader-elect-resource-name ""`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.Members = []string{"m1=/k/m1"}
			o.LeaderElection.Enabled = true
			tc.le(&o.LeaderElection)
			_, err := o.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestMemberPorts(t *testing.T) {
	got, err := parseMemberPorts([]string{"m2=10251", "m3=10252"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int32{"m2": 10251, "m3": 10252}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

package app

import (
	"strings"
	"testing"

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
	_, err := o.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`--member "bad"`, "given twice", `--member-kubelet-port "m3=0"`, `--member-kubelet-port "m4"`,
		`--member-kubelet-port "m5=http"`, "m6=10251: port already given to m2", "m7=10257: no --member m7", "--rotate-server-certificates and --tls-cert-file", `--kubelet-address "nowhere"`, `--keep-label-keys "not a key"`, "longer than 63", `--denied-namespaces "Kube_System"`} {
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

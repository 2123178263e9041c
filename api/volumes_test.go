package api

import "testing"

func TestVolumeNames(t *testing.T) {
	for got, want := range map[string]string{
		Provisioner: "member.tether.io", StorageClassParamMemberClass: "memberStorageClassName",
		AnnotationMemberVolume: "tether.io/member-volume", HostVolumeName("0f1e"): "pvc-0f1e", MemberVolume("m1", "pv-a"): "m1/pv-a",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	for v, want := range map[string]bool{"m1/pv-a": true, "m1/": false, "/pv": false, "m1": false} {
		m, vol, ok := ParseMemberVolume(v)
		if ok != want || ok && (m != "m1" || vol != "pv-a") {
			t.Errorf("ParseMemberVolume(%q) = %q, %q, %v", v, m, vol, ok)
		}
	}
}

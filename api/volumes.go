package api

import "strings"

// Volumes of offloaded pods. A host StorageClass whose provisioner is Provisioner (volumeBindingMode
// WaitForFirstConsumer) gives claims that live in a member: when the host scheduler picks a virtual node for the
// first pod of such a claim, tether-node creates the claim's copy in that member and a host PersistentVolume
// bound to the claim whose node affinity names the member (LabelMember), so that every later pod of the claim is
// placed on that member by the host scheduler itself.
const (
	// Provisioner is the provisioner of Tether's StorageClasses.
	Provisioner = "member.tether.io"
	// StorageClassParamMemberClass, a parameter of such a StorageClass, is the storageClassName of the member
	// copies of its claims; absent: the member's default StorageClass.
	StorageClassParamMemberClass = "memberStorageClassName"
	// AnnotationMemberVolume on a host PersistentVolumeClaim is "<member>/<volume>": the member whose copy of the
	// claim is bound, and the member PersistentVolume it is bound to. Written by tether-node.
	AnnotationMemberVolume = "tether.io/member-volume"
	// DefaultStorageClass is the name of the StorageClass the sandbox (and the chart) create.
	DefaultStorageClass = "tether"
)

// HostVolumeName is the name of the host PersistentVolume Tether provisions for the claim of UID claimUID.
func HostVolumeName(claimUID string) string { return "pvc-" + claimUID }

// MemberVolume formats the AnnotationMemberVolume value.
func MemberVolume(member, volume string) string { return member + "/" + volume }

// ParseMemberVolume reads an AnnotationMemberVolume value.
func ParseMemberVolume(v string) (member, volume string, ok bool) {
	member, volume, ok = strings.Cut(v, "/")
	return member, volume, ok && member != "" && volume != ""
}

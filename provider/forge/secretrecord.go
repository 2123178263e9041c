package forge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/api"
)

// SecretEntry is what the record of a virtual node (api.Owner.SecretRecordName) says of one Secret copy it
// wrote: the copy's UID (every later write and delete names it as a precondition), the host Secret it copies, a
// hash of what was written, and the two things that decide between an update and a replacement.
type SecretEntry struct {
	UID       types.UID         `json:"uid"`
	Host      types.UID         `json:"host"`
	Hash      string            `json:"hash"`
	Type      corev1.SecretType `json:"type,omitempty"`
	Immutable bool              `json:"immutable,omitempty"`
}

// SecretEntryOf is the entry of a copy as the member returned it from a write.
func SecretEntryOf(written *corev1.Secret, want *corev1.Secret) SecretEntry {
	return SecretEntry{UID: written.UID, Host: hostUID(want), Hash: SecretHash(want), Type: want.Type,
		Immutable: want.Immutable != nil && *want.Immutable}
}

// SecretHash sums what a copy carries (labels, annotations, type, immutability, data), so that a copy is written
// only when its host Secret changed.
func SecretHash(s *corev1.Secret) string {
	b, _ := json.Marshal(struct {
		Labels, Annotations map[string]string
		Type                corev1.SecretType
		Immutable           *bool
		Data                map[string][]byte
	}{s.Labels, s.Annotations, s.Type, s.Immutable, s.Data}) // maps marshal in key order
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// SecretCopyAction says what a Secret copy recorded as e (ok: recorded at all) needs to become want. Without an
// entry there is no copy of Tether's: CopyCreate.
func SecretCopyAction(e SecretEntry, ok bool, want *corev1.Secret) CopyAction {
	switch {
	case !ok:
		return CopyCreate
	case e.Host != hostUID(want):
		return CopyReplace
	case e.Hash == SecretHash(want):
		return CopyInStep
	case e.Type != want.Type, e.Immutable:
		return CopyReplace
	}
	return CopyUpdate
}

func hostUID(s *corev1.Secret) types.UID { return types.UID(s.Annotations[api.AnnotationHostUID]) }

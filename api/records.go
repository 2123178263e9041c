package api

import (
	"crypto/sha256"
	"encoding/hex"
)

// SecretRecordName is the ConfigMap in which the virtual node of o records, in each member namespace, the Secret
// copies it wrote there (name → UID and content hash). tether-node may write Secrets in a member but not read
// them; the record is how it knows which ones are its own. Its copies name the record as their owner, so the
// member's garbage collector removes them with it.
func (o Owner) SecretRecordName() string {
	sum := sha256.Sum256([]byte(o.ClusterID + "/" + o.NodeName))
	return "tether-secrets-" + hex.EncodeToString(sum[:5])
}

// ObjectCountQuota is the ResourceQuota Tether puts in each member namespace it creates: its status counts the
// Secrets there (count/secrets), which tether-node may not list, so that a namespace holding someone else's
// Secret is never deleted.
const ObjectCountQuota = "tether-object-count"

// ObjectCountLimit is the quota's hard count of Secrets: high enough never to refuse one.
const ObjectCountLimit = 1_000_000

package copies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// ErrNotOurs is returned by SecretCopies.Ensure when the member has a Secret of that name that is not a copy of
// Tether's (or not one it knows of): it is left untouched.
var ErrNotOurs = errors.New("the member object of that name is not Tether's")

// SecretCopies writes a member's Secret copies without reading a Secret: tether-node's member identity may
// create, update and delete Secrets, not get, list or watch them. What it wrote is kept in a record ConfigMap
// per member namespace (api.Owner.SecretRecordName: name → UID, host UID, content hash), read from the member's
// cache of owned ConfigMaps and written by merge patches. Every update and delete of a copy names the recorded
// UID as a precondition, so a Secret that is not the one Tether created is never written over or deleted; each
// copy names the record as its owner, so the member's garbage collector removes copies whose record is gone
// (also one created just before tether-node died, before it was recorded), and Tether's cleanup of a member or
// a namespace cannot miss one.
type SecretCopies struct {
	client kubernetes.Interface
	owner  api.Owner
	record string
	cms    corev1listers.ConfigMapLister
	// verify is how often a copy in step is written again unchanged (a no-op for the member's storage): the
	// only way to see, without reading, that someone deleted or replaced it. Each copy is also written so once
	// after this process first meets it (a restart looks at every copy); 0: only then.
	verify time.Duration

	mu       sync.Mutex
	loaded   bool
	records  map[string]*secretRecord // namespace → what its record holds
	verified map[string]time.Time
	locks    [64]sync.Mutex // per copy (striped): one writer at a time
	nsLocks  sync.Map       // namespace → *sync.RWMutex: copies written shared, the record deleted alone
}

type secretRecord struct {
	uid     types.UID // the record ConfigMap's; "" when there is none
	entries map[string]forge.SecretEntry
}

// NewSecretCopies builds the Secret copies of one virtual node: client writes to the member, cms lists the
// member ConfigMaps the node owns (the records among them), verify paces the no-op writes that check a copy is
// still there.
func NewSecretCopies(client kubernetes.Interface, owner api.Owner, cms corev1listers.ConfigMapLister, verify time.Duration) *SecretCopies {
	return &SecretCopies{client: client, owner: owner, record: owner.SecretRecordName(), cms: cms, verify: verify,
		records: map[string]*secretRecord{}, verified: map[string]time.Time{}}
}

// RecordName is the name of the record ConfigMap in every member namespace.
func (s *SecretCopies) RecordName() string { return s.record }

// load reads every record from the cache, once (the cache has synced by the first use). Later, this process is
// the records' only writer and keeps its view up to date itself; RecordGone is told of a record someone deleted.
func (s *SecretCopies) load() {
	if s.loaded {
		return
	}
	s.loaded = true
	cms, err := s.cms.List(labels.SelectorFromSet(s.owner.Labels()))
	if err != nil {
		return
	}
	for _, cm := range cms {
		if cm.Name == s.record && s.owner.Owns(cm) {
			s.records[cm.Namespace] = parseRecord(cm)
		}
	}
}

func parseRecord(cm *corev1.ConfigMap) *secretRecord {
	r := &secretRecord{uid: cm.UID, entries: map[string]forge.SecretEntry{}}
	for name, v := range cm.Data {
		var e forge.SecretEntry
		if json.Unmarshal([]byte(v), &e) == nil && e.UID != "" {
			r.entries[name] = e
		}
	}
	return r
}

// Entry is the recorded copy of Secret ns/name.
func (s *SecretCopies) Entry(ns, name string) (forge.SecretEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load()
	r := s.records[ns]
	if r == nil {
		return forge.SecretEntry{}, false
	}
	e, ok := r.entries[name]
	return e, ok
}

// Keys are "namespace/name" of every recorded copy, sorted.
func (s *SecretCopies) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load()
	var out []string
	for ns, r := range s.records {
		for name := range r.entries {
			out = append(out, ns+"/"+name)
		}
	}
	sort.Strings(out)
	return out
}

// RecordGone is told that the record of namespace ns (with that UID) was deleted. The member's garbage collector
// now deletes the copies it owned; the entries are kept, so that each copy is written again (UID precondition)
// naming a new record, or created again once the collector took it. It returns the keys ("namespace/name") of
// the copies to look at again.
func (s *SecretCopies) RecordGone(ns string, uid types.UID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[ns]
	if r == nil || r.uid != uid {
		return nil
	}
	r.uid = ""
	var keys []string
	for name := range r.entries {
		k := ns + "/" + name
		delete(s.verified, k) // write it again, even in step
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lock takes the lock of copy ns/name and, shared, that of its namespace (the record is deleted only under
// the namespace's lock held alone, so never between a copy's create, which names it, and its entry).
func (s *SecretCopies) lock(ns, name string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ns + "/" + name))
	l := &s.locks[h.Sum32()%uint32(len(s.locks))]
	n := s.nsLock(ns)
	n.RLock()
	l.Lock()
	return func() {
		l.Unlock()
		n.RUnlock()
	}
}

func (s *SecretCopies) nsLock(ns string) *sync.RWMutex {
	l, _ := s.nsLocks.LoadOrStore(ns, &sync.RWMutex{})
	return l.(*sync.RWMutex)
}

// Ensure makes the member's copy of ns/name be want (forge.Secret of the host Secret): created, updated or
// replaced, or left as it is when its record says it is in step. It returns ErrNotOurs, wrapped, when the
// member holds a Secret of that name that Tether did not create (or that replaced Tether's copy); written says
// whether the member was written to.
func (s *SecretCopies) Ensure(ctx context.Context, want *corev1.Secret) (written bool, err error) {
	// After the locks: a copy someone replaced is no longer recorded. A failure is the periodic pass's to retry.
	defer func() { _ = s.DropRecordIfEmpty(ctx, want.Namespace) }()
	defer s.lock(want.Namespace, want.Name)()
	e, ok := s.Entry(want.Namespace, want.Name)
	secrets := s.client.CoreV1().Secrets(want.Namespace)
	k := want.Namespace + "/" + want.Name
	switch forge.SecretCopyAction(e, ok, want) {
	case forge.CopyInStep:
		if !s.due(k) {
			return false, nil
		}
		fallthrough // write it again as it is: a no-op unless someone deleted or changed it
	case forge.CopyUpdate:
		up := want.DeepCopy()
		up.UID = e.UID // the precondition: this very copy, or nothing
		up.OwnerReferences, err = s.ownerRefs(ctx, want.Namespace)
		if err != nil {
			return false, err
		}
		got, err := secrets.Update(ctx, up, metav1.UpdateOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Deleted by someone: created again below.
		case apierrors.IsConflict(err) || apierrors.IsInvalid(err):
			// Another Secret of that name now: not ours, and no longer recorded.
			if err := s.unrecord(ctx, want.Namespace, want.Name); err != nil {
				return false, err
			}
			return false, fmt.Errorf("secret %s: %w", k, ErrNotOurs)
		case err != nil:
			return false, fmt.Errorf("update member secret %s: %w", k, err)
		default:
			s.markVerified(k)
			return true, s.put(ctx, want.Namespace, want.Name, forge.SecretEntryOf(got, want))
		}
	case forge.CopyReplace:
		if err := s.remove(ctx, want.Namespace, want.Name, e); err != nil {
			return false, err
		}
	}
	return true, s.create(ctx, want)
}

func (s *SecretCopies) create(ctx context.Context, want *corev1.Secret) error {
	k := want.Namespace + "/" + want.Name
	refs, err := s.ownerRefs(ctx, want.Namespace)
	if err != nil {
		return err
	}
	c := want.DeepCopy()
	c.OwnerReferences = refs
	got, err := s.client.CoreV1().Secrets(want.Namespace).Create(ctx, c, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Not recorded, so not known to be ours: someone else's (or a copy this node created just before it
		// died, which the garbage collector takes with the record).
		return fmt.Errorf("secret %s: %w", k, ErrNotOurs)
	}
	if err != nil {
		return fmt.Errorf("create member secret %s: %w", k, err)
	}
	s.markVerified(k)
	return s.put(ctx, want.Namespace, want.Name, forge.SecretEntryOf(got, want))
}

// Delete deletes the recorded copy ns/name (UID precondition: a Secret that replaced it stays) and its entry;
// the record goes with its last entry.
func (s *SecretCopies) Delete(ctx context.Context, ns, name string) (err error) {
	defer func() {
		if derr := s.DropRecordIfEmpty(ctx, ns); err == nil {
			err = derr
		}
	}()
	defer s.lock(ns, name)()
	e, ok := s.Entry(ns, name)
	if !ok {
		return nil
	}
	return s.remove(ctx, ns, name, e)
}

func (s *SecretCopies) remove(ctx context.Context, ns, name string, e forge.SecretEntry) error {
	err := s.client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(e.UID))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete member secret %s/%s: %w", ns, name, err)
	}
	s.mu.Lock()
	delete(s.verified, ns+"/"+name)
	s.mu.Unlock()
	return s.unrecord(ctx, ns, name)
}

func (s *SecretCopies) due(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.verified[k]
	return !ok || s.verify > 0 && time.Since(at) >= s.verify
}

func (s *SecretCopies) markVerified(k string) {
	s.mu.Lock()
	s.verified[k] = time.Now()
	s.mu.Unlock()
}

// ownerRefs names namespace ns's record as the owner of a copy, creating the record first if it does not exist.
func (s *SecretCopies) ownerRefs(ctx context.Context, ns string) ([]metav1.OwnerReference, error) {
	uid, err := s.ensureRecord(ctx, ns)
	if err != nil {
		return nil, err
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: s.record, UID: uid}}, nil
}

func (s *SecretCopies) ensureRecord(ctx context.Context, ns string) (types.UID, error) {
	s.mu.Lock()
	s.load()
	if r := s.records[ns]; r != nil && r.uid != "" {
		s.mu.Unlock()
		return r.uid, nil
	}
	s.mu.Unlock()
	cms := s.client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.record, Namespace: ns, Labels: s.owner.Labels()}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cm, err = cms.Get(ctx, s.record, metav1.GetOptions{})
		if err == nil && !s.owner.Owns(cm) {
			return "", fmt.Errorf("configmap %s/%s, where Tether records its Secret copies: %w", ns, s.record, ErrNotOurs)
		}
	}
	if err != nil {
		return "", fmt.Errorf("create the record of secret copies in %s: %w", ns, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r := s.records[ns]; {
	case r != nil && r.uid == "":
		r.uid = cm.UID // a new record for the entries of the one that went
	case r == nil || r.uid != cm.UID:
		s.records[ns] = parseRecord(cm)
	}
	return cm.UID, nil
}

// put records entry e of ns/name (merge patch; the record's UID in it is the precondition).
func (s *SecretCopies) put(ctx context.Context, ns, name string, e forge.SecretEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.patch(ctx, ns, name, string(v))
}

// unrecord removes the entry of ns/name (DropRecordIfEmpty deletes a record left empty).
func (s *SecretCopies) unrecord(ctx context.Context, ns, name string) error {
	s.mu.Lock()
	r := s.records[ns]
	s.mu.Unlock()
	if r == nil || r.uid == "" {
		return nil
	}
	return s.patch(ctx, ns, name, nil)
}

// EmptyRecords are the namespaces whose record names no copy (DropRecordIfEmpty deletes them).
func (s *SecretCopies) EmptyRecords() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load()
	var out []string
	for ns, r := range s.records {
		if r.uid != "" && len(r.entries) == 0 {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// DropRecordIfEmpty deletes namespace ns's record once it names no copy, under the namespace's lock held alone.
func (s *SecretCopies) DropRecordIfEmpty(ctx context.Context, ns string) error {
	empty := func() *secretRecord {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r := s.records[ns]; r != nil && r.uid != "" && len(r.entries) == 0 {
			return r
		}
		return nil
	}
	if empty() == nil {
		return nil
	}
	l := s.nsLock(ns)
	l.Lock()
	defer l.Unlock()
	r := empty()
	if r == nil {
		return nil
	}
	err := s.client.CoreV1().ConfigMaps(ns).Delete(ctx, s.record, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(r.uid))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete the empty record of secret copies in %s: %w", ns, err) // still known as empty
	}
	s.mu.Lock()
	if s.records[ns] == r {
		delete(s.records, ns)
	}
	s.mu.Unlock()
	return nil
}

// patch sets (value a string) or removes (nil) the entry of name in namespace ns's record.
func (s *SecretCopies) patch(ctx context.Context, ns, name string, value any) error {
	s.mu.Lock()
	r := s.records[ns]
	s.mu.Unlock()
	if r == nil || r.uid == "" {
		return fmt.Errorf("no record of secret copies in %s", ns)
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": r.uid}, "data": map[string]any{name: value}})
	if err != nil {
		return err
	}
	cm, err := s.client.CoreV1().ConfigMaps(ns).Patch(ctx, s.record, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
		// The record went, or another object took its name: a new one is made on the next try.
		s.RecordGone(ns, r.uid)
		return fmt.Errorf("record secret %s/%s: the record is gone: %w", ns, name, err)
	}
	if err != nil {
		return fmt.Errorf("record secret %s/%s: %w", ns, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.records[ns]; cur != nil && cur.uid == cm.UID {
		// This process is the only writer: its entry is current whatever the patch returned of the others.
		if value == nil {
			delete(cur.entries, name)
		} else {
			var e forge.SecretEntry
			if json.Unmarshal([]byte(value.(string)), &e) == nil {
				cur.entries[name] = e
			}
		}
	}
	return nil
}

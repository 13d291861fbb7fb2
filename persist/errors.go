package persist

import "errors"

// The errors callers tell apart, all in one place: every one is wrapped
// (with %w) by the function that returns it, with context, so errors.Is
// finds it. The control API carries each as a code (actors' errorCodes), so
// errors.Is finds them across the socket too.
var (
	// ErrNoIdentity is wrapped when the identity key file does not exist.
	ErrNoIdentity = errors.New("no identity")
	// ErrIdentityExists is wrapped when CreateIdentity would overwrite a key.
	ErrIdentityExists = errors.New("identity already exists")

	// ErrLocked is wrapped when another process holds the store's file lock.
	ErrLocked = errors.New("store locked")
	// ErrNewerSchema is wrapped when the store or a record in it was written
	// by a newer menode than this one.
	ErrNewerSchema = errors.New("store written by a newer menode")
	// ErrCorruptStore is wrapped when megaengine.db is damaged: bbolt
	// refused it, or reading it faulted or panicked. After that the Store
	// answers every call with the same error (a panic inside bbolt may leave
	// its locks held).
	ErrCorruptStore = errors.New("corrupt store")
	// ErrUnknownRepo is wrapped when a repository is not in the store.
	ErrUnknownRepo = errors.New("unknown repository")

	// ErrNotGitRepo is wrapped when a directory is not the top of a git
	// repository (or a bare repository).
	ErrNotGitRepo = errors.New("not a git repository")
	// ErrEmptyRepo is wrapped when a repository has no commits.
	ErrEmptyRepo = errors.New("repository has no commits")
	// ErrShallowRepo is wrapped when a repository is a shallow or partial
	// clone: its history or objects are incomplete, so it can be neither
	// identified nor served.
	ErrShallowRepo = errors.New("incomplete repository (shallow or partial clone)")

	// ErrNotEmpty is wrapped when a clone's destination exists and is not
	// an empty directory.
	ErrNotEmpty = errors.New("destination not empty")
	// ErrNotFastForward is wrapped when a pull would need a merge or a
	// rebase (the clone's branch and the mirror's diverged) and neither
	// was asked for.
	ErrNotFastForward = errors.New("not a fast-forward")
	// ErrMissingObjects is wrapped when the mirror lacks an object it
	// needs: a bundle's prerequisite, or the object a signed ref names. A
	// bigger bundle (fewer haves) fixes it.
	ErrMissingObjects = errors.New("objects missing from the mirror")

	// ErrNothingToSend is wrapped by CreateBundle when the haves already
	// hold every object the refs need: git refuses to write an empty bundle.
	ErrNothingToSend = errors.New("nothing to send")
	// ErrBadBundle is wrapped when a bundle is malformed or does not match
	// the signed refs it is meant to carry.
	ErrBadBundle = errors.New("bad bundle")
)

// ErrGitAllocLimit is wrapped when git, reading a peer's data, refused to
// allocate more than the repository's MaxGitAlloc: an object (a delta's
// result, or a tree or commit) is larger than that, or a pack holds more
// objects than the limit has room to list.
var ErrGitAllocLimit = errors.New("over the memory limit for git reading a peer's data")

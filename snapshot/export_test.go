package snapshot

// SetSnapshotViewOpenedHook makes every snapshot call f right after it
// opened its read view, before it locks the tables' schema; nil removes it.
func SetSnapshotViewOpenedHook(f func()) { testHookViewOpened = f }

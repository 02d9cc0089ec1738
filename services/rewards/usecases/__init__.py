"""One function per thing a user or a loop does with rewards: settle the due periods, apply a
batch of metric values, simulate a version, revoke a grant. Each owns its transaction (or runs
in the consumer's, with the offsets), asks the domain, and tells the store."""

"""The campaign rule kinds of SPEC §5 and §10, one module each (`rank`, `threshold`, `lottery`,
`scaled`): its definition, the metrics it reads, whether it settles at period end, and how it
decides. `registry` knows them all; `base` is what they share."""

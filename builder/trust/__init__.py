"""Signed TUF metadata for the catalog (docs/device-index.md, "Signed metadata (TUF)").

- :mod:`builder.trust.keys`: the key folder (the roles' private keys, every signed root, the
  last signed targets, snapshot and timestamp), ``depot keys init`` and ``depot keys rotate``;
- :mod:`builder.trust.metadata`: the build's trust step, root, targets and snapshot as Outputs;
- :mod:`builder.trust.timestamp`: the timestamp role, signed with the clock, and when it is due;
- :mod:`builder.trust.resign`: ``depot sign-timestamp`` (and ``depot serve``'s re-signing).

The build imports these modules (and with them python-tuf and cryptography) only when it has a
key folder, so ``depot build`` without one starts as quickly as before.
"""

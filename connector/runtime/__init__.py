"""Running the connector for real: cross-process exclusion per account, the identity of this
process and of the host that owns a ledger, private files, the job functions shared by
``ci-connector run`` and the job-engine worker, and the embedded scheduler."""

"""Rate limits shared by every api replica (token buckets in Postgres)."""

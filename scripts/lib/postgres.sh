# Sourced by scripts/test.sh and scripts/bench.sh: Debian's PostgreSQL 15 cluster, started, with
# a login role that may create databases (one database per test server or benchmark).
#   postgres_role NAME PASSWORD   (as root)
postgres_role() {
  pg_ctlcluster --skip-systemctl-redirect 15 main start 2>/dev/null || true
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "DO \$\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$1') THEN
        CREATE ROLE $1 LOGIN CREATEDB;
      END IF;
      ALTER ROLE $1 PASSWORD '$2'; END\$\$"
}

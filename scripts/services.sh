#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis servers the storage tests use are up on 127.0.0.1.
# On the project's machines both are started before a session; this starts one that has
# stopped, and installs it from Debian's packages on a machine that lacks it.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if ! redis_up; then
  command -v redis-server >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq redis-server >/dev/null; }
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 \
    || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
fi

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq postgresql >/dev/null; }
  for v in $(ls /etc/postgresql 2>/dev/null); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
  done
fi

for _ in $(seq 1 30); do
  if redis_up && pg_up; then break; fi
  sleep 1
done
redis_up && echo "redis: up" || echo "redis: DOWN"
pg_up && echo "postgresql: up" || echo "postgresql: DOWN"
exit 0

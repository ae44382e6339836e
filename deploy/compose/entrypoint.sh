#!/bin/sh
# The amr image's entry point: `amr "$@"`, with the PostgreSQL password taken from the file
# $PGPASSWORD_FILE names (a compose secret) into $PGPASSWORD, which libpq (psycopg) reads. The
# password is then in no YAML file, no image and no `docker inspect` output.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD="$(cat "$PGPASSWORD_FILE")"
    export PGPASSWORD
fi
exec amr "$@"

#!/bin/sh
# Makes the secrets of the compose trial in ./secrets/ next to compose.yaml (kept out of git):
#   master_key            the master key that seals vending keys (64 hex digits)
#   db_password           PostgreSQL's password for the role amr
#   vending_key           the simulated meters' vending key (16 hex digits), imported into the
#                         head-end through the API (README.md)
#   command-signing.pem   the head-ends' Ed25519 command-signing key, and its public half
#   command-signing.pub   (for the concentrator's headend_public_key_file)
# A secret that exists already is kept. Needs openssl (1.1.1 or later).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets

missing() {
    if [ -e "secrets/$1" ]; then
        echo "secrets/$1: kept"
        return 1
    fi
    echo "secrets/$1: made"
}

if missing master_key; then openssl rand -hex 32 > secrets/master_key; fi
if missing db_password; then openssl rand -hex 24 > secrets/db_password; fi
if missing vending_key; then openssl rand -hex 8 > secrets/vending_key; fi
if missing command-signing.pem; then
    openssl genpkey -algorithm ed25519 -out secrets/command-signing.pem
    openssl pkey -in secrets/command-signing.pem -pubout -out secrets/command-signing.pub
fi
# The containers run as their own users (amr 10001, postgres 999, mosquitto), and compose
# mounts these files as they are: readable to every user in the files, the folder (0700) keeps
# them from the other users of this machine.
chmod 644 secrets/*

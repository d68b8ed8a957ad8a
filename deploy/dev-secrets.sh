#!/bin/sh
# Generates the development secrets deploy/compose.yaml reads, in deploy/secrets/ (git-ignored):
#   postgres_password  the PostgreSQL password (hex, so it needs no escaping in a URL)
#   database_url       postgres://tether:PASSWORD@postgres:5432/tether, read into TETHER_DATABASE_URL
#   api_key_pepper     the API-key pepper (32 random bytes as hex), read via TETHER_API_KEY_PEPPER_FILE
# It refuses to overwrite: losing or changing the pepper invalidates every API key.
set -eu
cd "$(dirname "$0")/secrets"
if [ -e api_key_pepper ] || [ -e postgres_password ] || [ -e database_url ]; then
    echo "deploy/secrets/ already holds secrets; delete them first to regenerate" >&2
    exit 1
fi
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
password=$(hex 24)
umask 022
printf '%s' "$password" >postgres_password
printf 'postgres://tether:%s@postgres:5432/tether' "$password" >database_url
hex 32 >api_key_pepper
# Compose bind-mounts file secrets as they are (it ignores uid/gid/mode outside Swarm), so the
# files must be readable by the containers' users (tetherd runs as uid 10001); the directory
# itself is closed to other users on this host.
chmod 0644 postgres_password database_url api_key_pepper
chmod 0700 .
echo "wrote deploy/secrets/{postgres_password,database_url,api_key_pepper}"

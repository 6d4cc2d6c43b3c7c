#!/bin/sh
# Run by the deploy jobs before `pipewright/deploy`: the ssh configuration that reaches the
# environment's server (from the SERVER, SERVER_USER and SSH_PORT secrets) and the
# application's environment file (the API keys, from the environment's secrets), both read
# by .pipewright/deploy.yml. Nothing here is committed: the job writes them each time.
set -eu
env_name=$1
umask 077
cat > deploy/ssh_config <<CONFIG
Host $env_name
  HostName $SERVER
  User $SERVER_USER
  Port ${SSH_PORT:-22}
  # The first deploy learns the server's key; later ones check it.
  StrictHostKeyChecking accept-new
  UserKnownHostsFile $HOME/.ssh/known_hosts
  BatchMode yes
CONFIG
mkdir -p "$HOME/.ssh"
{
  echo "HOST=$SERVER"
  for key in ANTHROPIC_API_KEY STRIPE_SECRET_KEY STRIPE_PUBLISHABLE_KEY SENDGRID_API_KEY; do
    eval "value=\${$key:-}"
    # Single quotes: a key holding `$` is taken as it is.
    printf "%s='%s'\n" "$key" "$(printf %s "$value" | sed "s/'/'\\\\''/g")"
  done
} > "deploy/$env_name.env"
# The release's label: the package's version and the commit.
version=$(ls dist/*.whl | sed -n 's/.*inner_architect-\([^-]*\)-.*/\1/p' | head -n1)
echo "version=$version-$(printf %s "$GITHUB_SHA" | cut -c1-8)" >> "$GITHUB_OUTPUT"

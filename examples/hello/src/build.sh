#!/bin/sh
# Runs inside the builder stage: proves that RUN executes a real shell in a sandbox.
set -eu
echo "built on: $(uname -s) by uid $(id -u)"
echo "pid inside the sandbox: $$"
for word in alpha beta gamma; do
  echo "step $word"
done

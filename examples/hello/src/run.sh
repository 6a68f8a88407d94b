#!/bin/sh
# The image's CMD: shows the build output and the runtime environment.
set -eu
echo "$GREETING"
echo "running as uid $(id -u) in $(pwd)"
cat /app/out.txt

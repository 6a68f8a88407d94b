#!/bin/sh
# handler 08
handle_08() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 08: $*"
}

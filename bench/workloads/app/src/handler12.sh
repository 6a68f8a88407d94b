#!/bin/sh
# handler 12
handle_12() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 12: $*"
}

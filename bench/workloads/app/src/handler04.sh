#!/bin/sh
# handler 04
handle_04() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 04: $*"
}

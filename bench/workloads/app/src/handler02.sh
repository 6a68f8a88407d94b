#!/bin/sh
# handler 02
handle_02() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 02: $*"
}

#!/bin/sh
# handler 06
handle_06() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 06: $*"
}

#!/bin/sh
# handler 01
handle_01() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 01: $*"
}

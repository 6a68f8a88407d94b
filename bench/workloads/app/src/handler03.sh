#!/bin/sh
# handler 03
handle_03() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 03: $*"
}

#!/bin/sh
# handler 07
handle_07() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 07: $*"
}

#!/bin/sh
# handler 11
handle_11() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 11: $*"
}

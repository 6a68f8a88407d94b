#!/bin/sh
# handler 10
handle_10() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 10: $*"
}

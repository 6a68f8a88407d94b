#!/bin/sh
# handler 05
handle_05() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 05: $*"
}

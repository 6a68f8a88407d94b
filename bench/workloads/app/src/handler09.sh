#!/bin/sh
# handler 09
handle_09() {
  echo "HTTP/1.0 200 OK"
  echo
  echo "handler 09: $*"
}

#!/bin/sh
# Writes the chain40 Dockerfile to stdout: 40 RUN steps in a row, each appending one line
# that depends on what the previous steps wrote, so no step can be skipped or reordered.
echo "# chain40: 40 dependent RUN steps -> the fixed cost of one step (sandbox, snapshot, commit)"
echo "FROM busybox"
echo 'RUN mkdir /chain && echo "step 1 of 40" > /chain/log'
i=2
while [ "$i" -le 40 ]; do
  echo "RUN echo \"step $i after \$(wc -l < /chain/log)\" >> /chain/log"
  i=$((i + 1))
done
echo 'CMD ["cat", "/chain/log"]'

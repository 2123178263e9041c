#!/usr/bin/env bash
# phase.sh NAME COMMAND...: runs COMMAND and prints how long the phase took, also when it fails.
set -u
name=$1; shift
start=$(date +%s)
echo "==> $name"
"$@"
rc=$?
echo "==> $name: $(( $(date +%s) - start )) s$([ $rc -ne 0 ] && echo ", FAILED (exit $rc)")"
exit $rc

"""Tests across several vmhost hosts on this one machine: the test bed of scripts/test-hosts.sh."""

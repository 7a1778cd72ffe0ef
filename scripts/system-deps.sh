#!/usr/bin/env bash
# Debian packages the tests and benchmarks use, installed only when missing:
# Java + Maven (Spark, Kafka, Cassandra), Chromium (browser tests), wrk, Redis + RediSearch (bench peers),
# nginx (the shortener bench's redirect ceiling), Memcached (the shortener's cache on the cluster profile)
# and ejabberd (the chat bench's XMPP peer).
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -e /usr/lib/redis/modules/redisearch.so ] || need+=(redis-redisearch)
# nginx lives in /usr/sbin, which is not on every user's PATH
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need+=(memcached)
command -v ejabberdctl >/dev/null 2>&1 || [ -x /usr/sbin/ejabberdctl ] || need+=(ejabberd)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null

# Helpers for the images built here offline (sourced by scripts/command-image.sh and
# scripts/server-image.sh): a root filesystem made of this host's binaries.

libraries_of() { # ROOTFS BINARY: the shared libraries BINARY loads, at their own paths
  ldd "$2" 2>/dev/null | grep -o '/[^ ]*' | while read -r library; do
    [ -e "$1$library" ] || install -D -m 0755 "$library" "$1$library"
  done
}

copy_with_libraries() { # ROOTFS BINARY...: each binary at its own path and the shared libraries it loads
  local root="$1"; shift
  for binary in "$@"; do
    install -D -m 0755 "$binary" "$root$binary"
    libraries_of "$root" "$binary"
  done
}

base_rootfs() { # ROOTFS UID NAME HOME: CA certificates, /tmp, and one unprivileged user
  local root="$1" uid="$2" name="$3" home="$4"
  mkdir -p "$root"/{etc/ssl/certs,tmp} "$root$home"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s:%s:%s:/bin/bash\n' "$name" "$uid" "$uid" "$name" "$home" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$name" "$uid" >"$root/etc/group"
  chmod 1777 "$root/tmp"
}

# SSH public keys for root, baked in at build time: a file of keys (one per
# line, like authorized_keys) on the build host. Empty: none baked in; keys
# can still come from the kernel command line at boot (sshkey="...").
export DIB_LEAN_IPA_SSH_KEYS=${DIB_LEAN_IPA_SSH_KEYS:-}
# crypt(3) hash for root's console password (e.g. from `openssl passwd -6`).
# Empty: root stays locked; rootpwd="<hash>" on the kernel command line
# sets one at boot.
export DIB_LEAN_IPA_ROOT_PASSWORD_HASH=${DIB_LEAN_IPA_ROOT_PASSWORD_HASH:-}
# The same hash read from a file on the build host (keeps it out of logs).
export DIB_LEAN_IPA_ROOT_PASSWORD_HASH_FILE=${DIB_LEAN_IPA_ROOT_PASSWORD_HASH_FILE:-}

# Compressor for the initramfs (stdin -> stdout). The Debian kernel unpacks
# gzip, xz, lz4 and zstd; zstd unpacks fastest, which matters under emulation.
export DIB_LEAN_IPA_COMPRESS_CMD=${DIB_LEAN_IPA_COMPRESS_CMD:-zstd -q -T0 -12}
# Kernel module trees (relative to /lib/modules/<version>/kernel) dropped
# from the ramdisk: hardware classes a deploy ramdisk never drives. The same
# as buildlib/kernel-modules.toml's [dib] prune, which ./build.sh dib passes in
# (change it there; a test keeps this default in step).
export DIB_LEAN_IPA_PRUNE_MODULES=${DIB_LEAN_IPA_PRUNE_MODULES-sound drivers/gpu drivers/media drivers/staging drivers/net/wireless drivers/bluetooth net/bluetooth net/wireless net/mac80211 drivers/iio drivers/isdn drivers/input/joystick drivers/input/touchscreen drivers/input/tablet drivers/input/misc drivers/hwmon drivers/video/fbdev drivers/comedi drivers/net/can net/can drivers/thunderbolt drivers/w1 drivers/mmc drivers/memstick drivers/leds drivers/platform/chrome drivers/accessibility drivers/net/ieee802154 net/ieee802154 net/nfc drivers/nfc drivers/atm net/atm drivers/net/hamradio net/ax25 fs/nls fs/ocfs2 fs/gfs2 fs/nfsd fs/ceph fs/smb fs/cifs fs/ubifs fs/jffs2 fs/f2fs fs/nilfs2 fs/orangefs fs/afs fs/reiserfs fs/nfs fs/lockd fs/coda net/sunrpc net/ceph net/tipc net/rxrpc net/9p fs/9p drivers/usb/gadget drivers/usb/serial drivers/usb/typec drivers/usb/misc drivers/usb/musb drivers/usb/dwc2 drivers/usb/dwc3 drivers/usb/chipidea drivers/usb/cdns3 drivers/usb/usbip drivers/usb/isp1760 drivers/usb/mtu3 drivers/mtd drivers/target drivers/soundwire drivers/gnss drivers/fpga drivers/siox drivers/slimbus drivers/pcmcia drivers/parport drivers/firewire drivers/net/wan drivers/net/ppp drivers/net/slip drivers/net/plip drivers/net/arcnet drivers/net/fddi drivers/net/hippi drivers/net/wwan drivers/net/ipa drivers/net/dsa drivers/platform/surface}
# Module names every lean-ipa image carries (buildlib/kernel-modules.toml,
# names; ./build.sh dib passes them): kept even if in a pruned tree.
export DIB_LEAN_IPA_KEEP_MODULES=${DIB_LEAN_IPA_KEEP_MODULES:-}
# Module names (without .ko) kept even if they sit in a pruned tree, and
# loaded at boot. Space separated.
export DIB_LEAN_IPA_EXTRA_MODULES=${DIB_LEAN_IPA_EXTRA_MODULES:-}
# Firmware (paths relative to /lib/firmware, shell globs) for hardware
# classes a deploy ramdisk never drives: GPUs, wireless, Bluetooth, sound, DSPs.
export DIB_LEAN_IPA_REMOVE_FIRMWARE=${DIB_LEAN_IPA_REMOVE_FIRMWARE-amdgpu radeon nvidia i915 xe nouveau ath* iwlwifi* rtw* rtl_bt rtlwifi mediatek brcm/*-sdio* brcm/brcmfmac* intel/ibt* intel/dsp* intel/sof* cirrus qca qcom ti-connectivity mrvl/*sd* libertas carl9170* htc_* ar3k dsp56k sound yamaha korg ess emi26 emi62 tehuti cadence imx}
# Packages purged (with whatever only they needed) before packing: pulled in
# by the base elements, never run in a deploy ramdisk.
export DIB_LEAN_IPA_PURGE_PACKAGES=${DIB_LEAN_IPA_PURGE_PACKAGES-software-properties-common packagekit usrmerge perl libfile-find-rule-perl locales cloud-initramfs-growroot cloud-guest-utils unattended-upgrades open-iscsi gnupg gnupg2 dirmngr gpg-agent gpgsm gpg-wks-client gpg-wks-server gnupg-utils gnupg-l10n pinentry-curses libglib2.0-data libperl5.36 perl-modules-5.36 libnumber-compare-perl libtext-glob-perl polkitd rsync}
# 1: compress kernel modules with zstd (kmod loads them as they are): the
# root lives in RAM, and this saves about 140 MB of it.
export DIB_LEAN_IPA_COMPRESS_MODULES=${DIB_LEAN_IPA_COMPRESS_MODULES:-1}
# 1: also drop docs, man pages, locales, include files, caches, stale
# bytecode. 0: keep them (debugging the image itself).
export DIB_LEAN_IPA_PRUNE=${DIB_LEAN_IPA_PRUNE:-1}

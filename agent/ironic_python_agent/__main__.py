# SPDX-License-Identifier: Apache-2.0
from ironic_python_agent.cmd.agent import main

main()

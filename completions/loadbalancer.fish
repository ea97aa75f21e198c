complete -c loadbalancer -l config -d 'Config file. Default: ./config.json, or the built-in default when that is absent' -r -F
complete -c loadbalancer -l seed -d 'Seed of the load balancer\'s random choices (`random`, `power_of_two`, probe jitter). Logged at startup; give the logged value to replay a run\'s choices. Default: random' -r
complete -c loadbalancer -l log-format -d 'Log lines as logfmt text (`key=value`, quoted where needed) or one JSON object per line' -r -f -a "text\t'logfmt: `key=value` pairs, values quoted where needed'
json\t'One JSON object per line'"
complete -c loadbalancer -l check -d 'Validate the config, print a one-line summary per listener and exit (0 valid, 2 invalid)'
complete -c loadbalancer -l demo -d 'Also start a demo backend (the `server` program) on each backend address of every pool'
complete -c loadbalancer -l no-cpu-affinity -d 'Leave the workers to the scheduler. By default, with one worker per CPU the process may use, each worker is bound to a CPU of its own and accepts the clients whose packets that CPU handles'
complete -c loadbalancer -s h -l help -d 'Print help (see more with \'--help\')'
complete -c loadbalancer -s V -l version -d 'Print version'

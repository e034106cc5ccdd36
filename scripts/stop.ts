/* npm stop: stops the cluster that npm start runs under .pgdata/ (or SPECTRUM_PGDATA). */
import { stopCluster } from './lib/cluster.ts';
import { startDataDir } from './lib/paths.ts';

const dir = startDataDir();
console.log(stopCluster(dir) ? `stopped the cluster in ${dir}` : `no cluster is running in ${dir}`);
